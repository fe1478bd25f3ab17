#include "model/mapped_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/util.h"

MappedFile::MappedFile(const std::string& p) : path(p) {
    int fd = open(p.c_str(), O_RDONLY);
    if (fd < 0) fail("%s: cannot open: %s", p.c_str(), strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fail("%s: not a regular file", p.c_str());
    }
    size = (size_t)st.st_size;
    if (size > 0) {
        void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            fail("%s: cannot map %zu bytes: %s", p.c_str(), size, strerror(e));
        }
        data = (const uint8_t*)m;
    }
    close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
    if (data) munmap((void*)data, size);
}

const uint8_t* MapCursor::take(size_t n, const char* what) {
    if (n > remaining())
        fail("%s: file is truncated: %s needs %zu bytes at offset %zu but only %zu remain", file.path.c_str(), what, n,
             pos, remaining());
    const uint8_t* p = file.data + pos;
    pos += n;
    return p;
}
