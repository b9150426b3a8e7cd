#!/usr/bin/env python3
"""An independent Capintec CRC-15R stand-in for nmbridge's tests, written from the protocol
notes alone (DOMAIN.md: 11-byte reply = 6 characters of nuclide name, a unit-code byte, the
activity as a little-endian float32), sharing no code with nmbridge.

    crc15r_device.py TTY NUCLIDE ACTIVITY UNIT_CODE [JUNK_REPLIES]

Opens TTY (one end of a socat pty pair) and answers every `@ABCDEFGHIJK` request with the
reading; the first JUNK_REPLIES answers are the same valid 11 bytes followed by stray bytes
in the same write, as a noisy line or a second talker would produce. Logs each answer to
stderr.
"""
import os
import struct
import sys
import termios
import tty

REQUEST = b"@ABCDEFGHIJK\r\n"


def main():
    path, nuclide, activity, unit = sys.argv[1:5]
    junk = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B4800
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    reply = nuclide.encode("ascii")[:6].ljust(6, b" ") + bytes([int(unit)]) + struct.pack("<f", float(activity))
    buf = b""
    while True:
        chunk = os.read(fd, 256)
        if not chunk:
            return
        buf += chunk
        while REQUEST in buf:
            buf = buf[buf.index(REQUEST) + len(REQUEST):]
            if junk > 0:
                junk -= 1
                os.write(fd, reply + b"\x13JUNK")
                sys.stderr.write("answered with junk\n")
            else:
                os.write(fd, reply)
                sys.stderr.write("answered\n")


if __name__ == "__main__":
    main()
