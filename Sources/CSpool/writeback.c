// sync_file_range needs _GNU_SOURCE, which Swift's Glibc module does not set.
#define _GNU_SOURCE
#include <fcntl.h>

#include "cspool.h"

int nm_start_writeback(int fd, int64_t offset, int64_t count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE);
}
