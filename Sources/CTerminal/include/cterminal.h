// Pseudo-terminal helpers for NMTransport: the POSIX pty calls need feature macros that
// Swift's Glibc module does not define, so they are wrapped here.
#ifndef CTERMINAL_H
#define CTERMINAL_H
#include <stddef.h>

/// Opens a pty pair's controlling side (O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC),
/// unlocks it and writes the other side's path into `path`. Returns the fd, or -1 with
/// errno set. The other side has been opened and closed once, so the returned side
/// reports POLLHUP while nobody has the other side open.
int nmb_open_pty(char *path, size_t path_size);

#endif
