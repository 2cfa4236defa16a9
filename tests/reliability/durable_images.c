/* LD_PRELOAD shim for the power-cut tests: keep, for each watched file, an image of its content
 * as of its last fsync/fdatasync. A power cut loses what the page cache held beyond that, so
 * copying the images back over the files after a SIGKILL is what the disk holds after the cut.
 *
 *   DURABLE_WATCH  path prefix of the watched files (".../backup.db" covers -wal and -shm)
 *   DURABLE_DIR    folder for the images (named after the file)
 *
 * The image is taken just before the real call, from the same file: what fsync then makes
 * durable. SQLite calls fsync/fdatasync through libc, so the shim sees every one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void take_image(int fd) {
    const char *watch = getenv("DURABLE_WATCH");
    const char *dir = getenv("DURABLE_DIR");
    if (watch == NULL || dir == NULL) return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return;
    path[n] = '\0';
    if (strncmp(path, watch, strlen(watch)) != 0) return;
    const char *base = strrchr(path, '/') + 1;
    char tmp[PATH_MAX], image[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, base);
    snprintf(image, sizeof image, "%s/%s", dir, base);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (in >= 0 && out >= 0) {
        char buf[1 << 16];
        ssize_t got;
        while ((got = read(in, buf, sizeof buf)) > 0) {
            if (write(out, buf, (size_t)got) != got) break;
        }
        rename(tmp, image);
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    take_image(fd);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    take_image(fd);
    return real(fd);
}
