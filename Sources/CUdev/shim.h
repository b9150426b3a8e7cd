// System library shim for libudev. Imported by exactly one Swift module (see docs/architecture.md).
#include <libudev.h>
