#!/usr/bin/env python3
"""An independent Modbus server for nmbridge's tests, built on pymodbus.

    modbus_server.py VALUES.json --tcp PORT [--unit N]
    modbus_server.py VALUES.json --rtu /dev/pts/N [--unit N]

VALUES.json lists what to serve, as the test wrote it:
    [{"table": "input", "address": 0, "type": "i32", "order": "CDAB", "value": -123456}, ...]
Each value is encoded here with pymodbus's own BinaryPayloadBuilder (not nmbridge's code),
so the test checks nmbridge's decoding against another implementation. Word orders map to
pymodbus's (byteorder, wordorder): ABCD (big, big), CDAB (big, little), BADC (little, big),
DCBA (little, little). Addresses are zero-based (zero_mode=True). Other units get no answer.
RTU runs at 19200 8N1: pyserial cannot set even parity on a socat pty here (EINVAL), and
parity means nothing on a pty anyway.
"""
import argparse
import json
import logging

from pymodbus.constants import Endian
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.payload import BinaryPayloadBuilder
from pymodbus.server import StartSerialServer, StartTcpServer
from pymodbus.transaction import ModbusRtuFramer

ORDERS = {
    "ABCD": (Endian.BIG, Endian.BIG),
    "CDAB": (Endian.BIG, Endian.LITTLE),
    "BADC": (Endian.LITTLE, Endian.BIG),
    "DCBA": (Endian.LITTLE, Endian.LITTLE),
}

SIZE = 2000


def registers_for(entry):
    byteorder, wordorder = ORDERS[entry.get("order", "ABCD")]
    builder = BinaryPayloadBuilder(byteorder=byteorder, wordorder=wordorder)
    kind, value = entry["type"], entry["value"]
    adders = {
        "u16": builder.add_16bit_uint, "i16": builder.add_16bit_int,
        "u32": builder.add_32bit_uint, "i32": builder.add_32bit_int,
        "u64": builder.add_64bit_uint, "i64": builder.add_64bit_int,
        "f32": builder.add_32bit_float, "f64": builder.add_64bit_float,
        "bitfield": builder.add_16bit_uint,
    }
    if kind == "string":
        builder.add_string(value.ljust(2 * entry["length"], "\0"))
    else:
        adders[kind](value)
    return builder.to_registers()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("values")
    parser.add_argument("--tcp", type=int)
    parser.add_argument("--rtu")
    parser.add_argument("--unit", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    tables = {"coil": [0] * SIZE, "discrete": [0] * SIZE, "holding": [0] * SIZE, "input": [0] * SIZE}
    with open(args.values) as f:
        for entry in json.load(f):
            table, address = entry["table"], entry["address"]
            if entry["type"] == "bool":
                tables[table][address] = 1 if entry["value"] else 0
            else:
                for i, register in enumerate(registers_for(entry)):
                    tables[table][address + i] = register

    unit = ModbusSlaveContext(
        co=ModbusSequentialDataBlock(0, tables["coil"]),
        di=ModbusSequentialDataBlock(0, tables["discrete"]),
        hr=ModbusSequentialDataBlock(0, tables["holding"]),
        ir=ModbusSequentialDataBlock(0, tables["input"]),
        zero_mode=True,
    )
    context = ModbusServerContext(slaves={args.unit: unit}, single=False)
    if args.tcp:
        StartTcpServer(context=context, address=("127.0.0.1", args.tcp))
    else:
        StartSerialServer(
            context=context, framer=ModbusRtuFramer, port=args.rtu, baudrate=19200, parity="N", stopbits=1, bytesize=8
        )


if __name__ == "__main__":
    main()
