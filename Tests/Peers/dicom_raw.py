#!/usr/bin/env python3
"""A hostile DICOM peer for nmbridge's hardening tests: upper-layer PDUs and DIMSE commands
built byte by byte from PS3.7/PS3.8 with the standard library only (no pynetdicom, no
nmbridge code), so that it can send what a well-behaved library never would.

    dicom_raw.py associate HOST PORT CALLED CALLING_HEX
        A-ASSOCIATE-RQ whose calling AE title is the given bytes (hex, padded to 16);
        prints {"pdu": "accept"|"reject"|"abort"|"closed", "result":, "source":, "reason":}
    dicom_raw.py store HOST PORT CALLED CALLING CASE
        associates (NM Image Storage, implicit VR little endian), sends one C-STORE whose
        dataset is malformed as CASE says, prints {"status": N} (the C-STORE-RSP status) or
        {"pdu": ...} when the association ends instead. CASE:
          huge-rows     (0028,0010) claims 0xFFFFFFF0 bytes; the dataset ends after 4
          pixel-short   Pixel Data claims 0x7FFFFFFF bytes; 100 are sent
          unclosed-item an undefined-length item in a sequence is never closed
          good          a small, well-formed dataset (the control case)
    dicom_raw.py flood HOST PORT COUNT
        COUNT connections one after the other, each sending one malformed PDU and waiting
        for the receiver to close it; prints {"connections": COUNT}
    dicom_raw.py unexpected HOST PORT CALLED CALLING
        associates, then sends an A-RELEASE-RP nobody asked for; prints the answer
        ({"pdu": "abort", "source":, "reason":} or "closed")
    dicom_raw.py release-early HOST PORT CALLED CALLING
        associates, sends a C-STORE request, then its A-RELEASE-RQ, then the (good) dataset;
        prints {"status": N, "then": PDU name} (the C-STORE-RSP, then what followed it)
    dicom_raw.py scp PORT CASE
        an acceptor on 127.0.0.1:PORT for one association (connections that send nothing,
        such as a test's probe, are skipped), behaving as CASE says; prints what it saw and
        exits. CASE:
          collide       accepts every context with its first transfer syntax, answers
                        C-ECHO, and answers the A-RELEASE-RQ with an A-RELEASE-RQ of its
                        own (a release collision, PS3.8 Sta10/Sta12); prints
                        {"echoes": N, "got": [PDU names after its A-RELEASE-RQ]}
          data-for-accept answers the A-ASSOCIATE-RQ with a P-DATA-TF; prints the PDU that
                        comes back ({"pdu": "abort", "source":, "reason":} or "closed")
"""
import json
import socket
import struct
import sys

NM_IMAGE = b"1.2.840.10008.5.1.4.1.1.20"
IMPLICIT_LE = b"1.2.840.10008.1.2"
APP_CONTEXT = b"1.2.840.10008.3.1.1.1"


def ae(value):
    return value[:16].ljust(16, b" ")


def item(kind, body):
    return struct.pack(">BBH", kind, 0, len(body)) + body


def pdu(kind, body):
    return struct.pack(">BBI", kind, 0, len(body)) + body


def associate_rq(called, calling):
    context = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, NM_IMAGE) + item(0x40, IMPLICIT_LE))
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.9.7433.1.1"))
    body = struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32) + item(0x10, APP_CONTEXT) + context + user
    return pdu(0x01, body)


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_pdu(sock):
    header = read_exact(sock, 6)
    if header is None:
        return None, None
    kind, _, length = struct.unpack(">BBI", header)
    body = read_exact(sock, length)
    return kind, body


def describe(kind, body):
    if kind is None:
        return {"pdu": "closed"}
    if kind == 0x02:
        return {"pdu": "accept"}
    if kind == 0x03:
        return {"pdu": "reject", "result": body[1], "source": body[2], "reason": body[3]}
    if kind == 0x07:
        return {"pdu": "abort", "source": body[2], "reason": body[3]}
    return {"pdu": "type %d" % kind}


def element(group, elem, value):
    """Implicit VR little endian: tag, 4-byte length, value (padded to even length)."""
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def command(sop_instance, message_id=1):
    body = (element(0x0000, 0x0002, NM_IMAGE) + element(0x0000, 0x0100, struct.pack("<H", 0x0001))
            + element(0x0000, 0x0110, struct.pack("<H", message_id)) + element(0x0000, 0x0700, struct.pack("<H", 0))
            + element(0x0000, 0x0800, struct.pack("<H", 0x0000)) + element(0x0000, 0x1000, sop_instance))
    return element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def dataset(case, sop_instance):
    head = (element(0x0008, 0x0016, NM_IMAGE) + element(0x0008, 0x0018, sop_instance)
            + element(0x0008, 0x0060, b"NM") + element(0x0010, 0x0020, b"RAW-0001")
            + element(0x0020, 0x000D, b"1.2.826.0.1.3680043.9.7433.2.1")
            + element(0x0020, 0x000E, b"1.2.826.0.1.3680043.9.7433.2.2"))
    if case == "good":
        return head + element(0x0028, 0x0010, struct.pack("<H", 4)) + element(0x7FE0, 0x0010, bytes(32))
    if case == "huge-rows":
        return head + struct.pack("<HHI", 0x0028, 0x0010, 0xFFFFFFF0) + b"\x04\x00\x00\x00"
    if case == "pixel-short":
        return head + element(0x0028, 0x0010, struct.pack("<H", 4)) + struct.pack("<HHI", 0x7FE0, 0x0010, 0x7FFFFFFF) + bytes(100)
    if case == "unclosed-item":
        # (0054,0016) Radiopharmaceutical Information Sequence, undefined length, one item of
        # undefined length holding an element and never closed by (FFFE,E00D) nor (FFFE,E0DD).
        return (head + struct.pack("<HHI", 0x0054, 0x0016, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                + element(0x0018, 0x1072, b"101500"))
    raise SystemExit("unknown case " + case)


def p_data(context_id, control, data):
    """One P-DATA-TF with one PDV (control: 1 = command, 2 = last fragment)."""
    pdv = struct.pack(">IBB", len(data) + 2, context_id, control) + data
    return pdu(0x04, pdv)


def status_of(body):
    """The Status (0000,0900) of a command in a P-DATA-TF body (implicit VR LE)."""
    data = body[6:]
    i = 0
    while i + 8 <= len(data):
        group, elem, length = struct.unpack("<HHI", data[i:i + 8])
        if (group, elem) == (0x0000, 0x0900):
            return struct.unpack("<H", data[i + 8:i + 10])[0]
        i += 8 + length
    return None


def connect(host, port):
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def cmd_associate(host, port, called, calling_hex):
    sock = connect(host, port)
    sock.sendall(associate_rq(called.encode(), bytes.fromhex(calling_hex)))
    print(json.dumps(describe(*read_pdu(sock))))
    sock.close()


def cmd_store(host, port, called, calling, case):
    sock = connect(host, port)
    sock.sendall(associate_rq(called.encode(), calling.encode()))
    kind, body = read_pdu(sock)
    if kind != 0x02:
        print(json.dumps(describe(kind, body)))
        return
    sop_instance = b"1.2.826.0.1.3680043.9.7433.3." + case.encode().hex().encode()[:20]
    sock.sendall(p_data(1, 0x03, command(sop_instance)))
    sock.sendall(p_data(1, 0x02, dataset(case, sop_instance)))
    kind, body = read_pdu(sock)
    if kind != 0x04:
        print(json.dumps(describe(kind, body)))
        return
    print(json.dumps({"status": status_of(body)}))
    sock.sendall(pdu(0x05, bytes(4)))
    read_pdu(sock)
    sock.close()


def cmd_unexpected(host, port, called, calling):
    sock = connect(host, port)
    sock.sendall(associate_rq(called.encode(), calling.encode()))
    kind, body = read_pdu(sock)
    if kind == 0x02:
        sock.sendall(pdu(0x06, bytes(4)))
        kind, body = read_pdu(sock)
    print(json.dumps(describe(kind, body)))
    sock.close()


def cmd_release_early(host, port, called, calling):
    sock = connect(host, port)
    sock.sendall(associate_rq(called.encode(), calling.encode()))
    kind, body = read_pdu(sock)
    if kind != 0x02:
        print(json.dumps(describe(kind, body)))
        return
    sop_instance = b"1.2.826.0.1.3680043.9.7433.3.4"
    sock.sendall(p_data(1, 0x03, command(sop_instance)))
    sock.sendall(pdu(0x05, bytes(4)))
    sock.sendall(p_data(1, 0x02, dataset("good", sop_instance)))
    kind, body = read_pdu(sock)
    if kind != 0x04:
        print(json.dumps(describe(kind, body)))
        return
    status = status_of(body)
    kind, body = read_pdu(sock)
    print(json.dumps({"status": status, "then": NAMES.get(kind, "closed")}))
    sock.close()


def cmd_flood(host, port, count):
    for _ in range(int(count)):
        sock = connect(host, port)
        # An unknown PDU type: the receiver aborts and closes.
        sock.sendall(pdu(0x09, bytes(8)))
        while sock.recv(4096):
            pass
        sock.close()
    print(json.dumps({"connections": int(count)}))


def items(data):
    """(type, body) of each item in a run of PS3.8 items."""
    i = 0
    while i + 4 <= len(data):
        kind, _, length = struct.unpack(">BBH", data[i:i + 4])
        yield kind, data[i + 4:i + 4 + length]
        i += 4 + length


def associate_ac(rq_body):
    """An A-ASSOCIATE-AC accepting each proposed context with its first transfer syntax."""
    answers = b""
    for kind, body in items(rq_body[68:]):
        if kind != 0x20:
            continue
        syntaxes = [value for sub, value in items(body[4:]) if sub == 0x40]
        answers += item(0x21, bytes([body[0], 0, 0, 0]) + item(0x40, syntaxes[0]))
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.9.7433.1.1"))
    return pdu(0x02, struct.pack(">HH", 1, 0) + rq_body[4:36] + bytes(32) + item(0x10, APP_CONTEXT) + answers + user)


def elements(data):
    """{(group, element): value} of an implicit VR little endian command set."""
    found, i = {}, 0
    while i + 8 <= len(data):
        group, elem, length = struct.unpack("<HHI", data[i:i + 8])
        found[(group, elem)] = data[i + 8:i + 8 + length]
        i += 8 + length
    return found


def echo_rsp(context_id, message_id):
    body = (element(0x0000, 0x0002, b"1.2.840.10008.1.1") + element(0x0000, 0x0100, struct.pack("<H", 0x8030))
            + element(0x0000, 0x0120, message_id) + element(0x0000, 0x0800, struct.pack("<H", 0x0101))
            + element(0x0000, 0x0900, struct.pack("<H", 0)))
    return p_data(context_id, 0x03, element(0x0000, 0x0000, struct.pack("<I", len(body))) + body)


NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF", 5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}


def cmd_scp(port, case):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(8)
    listener.settimeout(120)  # a requester that never comes: end rather than linger
    while True:
        sock, _ = listener.accept()
        sock.settimeout(30)
        kind, body = read_pdu(sock)
        if kind == 0x01:
            break
        sock.close()
    if case == "data-for-accept":
        sock.sendall(p_data(1, 0x03, bytes(8)))
        print(json.dumps(describe(*read_pdu(sock))))
        return
    sock.sendall(associate_ac(body))
    echoes = 0
    while True:
        kind, body = read_pdu(sock)
        if kind == 0x04:
            # One PDV holding a whole command: length (4), context id, control header.
            found = elements(body[6:])
            sock.sendall(echo_rsp(body[4], found[(0x0000, 0x0110)]))
            echoes += 1
            continue
        break
    got = []
    if kind == 0x05:
        sock.sendall(pdu(0x05, bytes(4)))  # our own A-RELEASE-RQ: the requests cross
        kind, body = read_pdu(sock)
        got.append(NAMES.get(kind, "closed"))
        if kind == 0x06:
            sock.sendall(pdu(0x06, bytes(4)))
            kind, body = read_pdu(sock)
            got.append(NAMES.get(kind, "closed"))
    else:
        got.append(NAMES.get(kind, "closed"))
    print(json.dumps({"echoes": echoes, "got": got}))


def main():
    command_name, rest = sys.argv[1], sys.argv[2:]
    {"associate": cmd_associate, "store": cmd_store, "flood": cmd_flood, "unexpected": cmd_unexpected,
     "release-early": cmd_release_early, "scp": cmd_scp}[command_name](*rest)


if __name__ == "__main__":
    main()
