#ifndef NMBRIDGE_CSPOOL_H
#define NMBRIDGE_CSPOOL_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli, the iSCSI/ext4 checksum) of `length` bytes, continuing from
/// `previous` (0 to start; the result of the previous call to continue). Uses the CPU's
/// crc32 instruction when it has one (SSE4.2), a table otherwise.
uint32_t nm_crc32c(uint32_t previous, const void *data, size_t length);

/// Starts writing `count` bytes of `fd` from `offset` to the disk without waiting
/// (sync_file_range with SYNC_FILE_RANGE_WRITE), so that a later fdatasync has less left
/// to do. 0, or -1 with errno set. A hint: durability still comes from fdatasync.
int nm_start_writeback(int fd, int64_t offset, int64_t count);

#endif
