#!/usr/bin/env python3
"""An independent Capintec CRC-35R stand-in for nmbridge's tests, written from the framing
rules alone (DOMAIN.md), sharing no code with nmbridge.

    crc35r_device.py TTY NUCLIDE ACTIVITY UNIT_DIGIT [GARBAGE_REPLIES]

Opens TTY (one end of a socat pty pair), answers every framed `R<n>` request with
`DR<n>,AB<nuclide>,<activity><unit digit>`; the first GARBAGE_REPLIES answers are a frame
with a wrong checksum followed by stray bytes instead. Logs each request to stderr.
"""
import os
import sys
import termios
import tty

STX, ETX = 0x02, 0x03


def checksum(length_byte, body):
    return ((STX + length_byte + sum(body)) & 0x7F) + 0x21


def frame(body):
    length_byte = len(body) + 0x41
    return bytes([STX, length_byte]) + body + bytes([checksum(length_byte, body), ETX])


def frames(fd):
    """Yields the bodies of well-formed frames read from fd."""
    buf = b""
    while True:
        chunk = os.read(fd, 256)
        if not chunk:
            return
        buf += chunk
        while True:
            start = buf.find(bytes([STX]))
            if start < 0:
                buf = b""
                break
            buf = buf[start:]
            if len(buf) < 2:
                break
            n = buf[1] - 0x41
            if n < 0 or n > 64:
                buf = buf[1:]
                continue
            if len(buf) < n + 4:
                break
            body, ck, end = buf[2:2 + n], buf[2 + n], buf[3 + n]
            buf = buf[n + 4:]
            if end == ETX and ck == checksum(n + 0x41, body):
                yield body


def main():
    path, nuclide, activity, unit = sys.argv[1:5]
    garbage = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B4800
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    for body in frames(fd):
        sys.stderr.write("request %r\n" % body)
        if not (len(body) == 2 and body[:1] == b"R"):
            continue
        chamber = body[1:2].decode()
        reply = frame(("DR%s,AB%-6s,%s%s" % (chamber, nuclide, activity, unit)).encode())
        if garbage > 0:
            garbage -= 1
            bad = bytearray(reply)
            bad[-2] ^= 0x0F
            reply = bytes(bad) + b"\x55\xaa"
        os.write(fd, reply)


if __name__ == "__main__":
    main()
