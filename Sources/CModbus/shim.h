// System library shim for libmodbus. Imported by exactly one Swift module (see docs/architecture.md).
#include <modbus/modbus.h>
