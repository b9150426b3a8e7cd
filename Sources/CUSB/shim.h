// System library shim for libusb-1.0. Imported by exactly one Swift module (see docs/architecture.md).
#include <libusb.h>
