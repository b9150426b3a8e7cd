// System library shim for zlib: inflating deflated DICOM datasets (DicomStore only).
#include <zlib.h>
