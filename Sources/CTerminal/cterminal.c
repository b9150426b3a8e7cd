#define _GNU_SOURCE
#include "cterminal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int nmb_open_pty(char *path, size_t path_size) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, path, path_size) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    /* Open and close the other side once: from then on the controlling side reports
       POLLHUP whenever nobody has it open (before the first open it reports nothing),
       which is how a simulator knows that a driver is listening. */
    int other = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (other >= 0) close(other);
    return fd;
}
