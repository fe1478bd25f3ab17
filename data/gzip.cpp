#include "data/gzip.h"

#include <cstdint>
#include <cstring>

#include "model/util.h"

namespace {

[[noreturn]] void damaged(const char* path, const char* what) {
    fail("%s: a damaged gzip file (%s): download it again, or check it with gzip -t", path, what);
}

// Bits least significant first, as deflate packs them.
struct Bits {
    const uint8_t* p;
    const uint8_t* end;
    const char* path;
    uint64_t buf = 0;
    int count = 0;
    uint32_t bits(int n) {
        while (count < n) {
            if (p >= end) damaged(path, "it ends inside its compressed data");
            buf |= (uint64_t)*p++ << count;
            count += 8;
        }
        const uint32_t v = (uint32_t)(buf & ((1ull << n) - 1));
        buf >>= n;
        count -= n;
        return v;
    }
    // Drops the bits left of the current byte; where the next whole byte is.
    const uint8_t* align() {
        const uint8_t* at = p - count / 8;
        buf = 0;
        count = 0;
        p = at;
        return at;
    }
};

// A canonical Huffman code as deflate sends it: how many codes of each length (1..15) and the
// symbols in code order. Decoding walks the lengths: the codes of one length are consecutive numbers.
struct Huffman {
    uint16_t count[16];
    uint16_t symbol[288];
};

// Builds `h` from each symbol's code length (0: unused); the number of codes left unused (0 for a
// complete code), negative for lengths that promise more codes than there are.
int build(Huffman& h, const uint8_t* lengths, int n) {
    memset(h.count, 0, sizeof h.count);
    for (int s = 0; s < n; s++) h.count[lengths[s]]++;
    if (h.count[0] == n) return 0;
    int left = 1;
    for (int len = 1; len < 16; len++) {
        left = (left << 1) - h.count[len];
        if (left < 0) return left;
    }
    uint16_t offset[16];
    offset[1] = 0;
    for (int len = 1; len < 15; len++) offset[len + 1] = (uint16_t)(offset[len] + h.count[len]);
    for (int s = 0; s < n; s++)
        if (lengths[s]) h.symbol[offset[lengths[s]]++] = (uint16_t)s;
    return left;
}

int decode(Bits& in, const Huffman& h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; len++) {
        code |= (int)in.bits(1);
        const int count = h.count[len];
        if (code - count < first) return h.symbol[index + (code - first)];
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    damaged(in.path, "a code that is in no table");
}

const uint16_t kLengthBase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
                                  131, 163, 195, 227, 258};
const uint8_t kLengthExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
const uint16_t kDistBase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                                2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
const uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

// One Huffman-coded block: literals, and copies of length and distance, up to the end-of-block symbol.
// `start`: where this member's output began (a copy reaches no further back).
void codes(Bits& in, std::string& out, size_t start, const Huffman& lengths, const Huffman& distances) {
    for (;;) {
        int sym = decode(in, lengths);
        if (sym < 256) {
            out += (char)sym;
        } else if (sym == 256) {
            return;
        } else {
            sym -= 257;
            if (sym >= 29) damaged(in.path, "a length code past the table");
            const size_t len = kLengthBase[sym] + in.bits(kLengthExtra[sym]);
            const int d = decode(in, distances);
            if (d >= 30) damaged(in.path, "a distance code past the table");
            const size_t dist = kDistBase[d] + in.bits(kDistExtra[d]);
            if (dist > out.size() - start) damaged(in.path, "a copy from before the start");
            for (size_t i = 0; i < len; i++) out += out[out.size() - dist];  // may overlap what it writes
        }
    }
}

// The deflate stream at in's position, its blocks appended to `out`.
void inflate(Bits& in, std::string& out) {
    const size_t start = out.size();
    for (bool last = false; !last;) {
        last = in.bits(1);
        const uint32_t type = in.bits(2);
        if (type == 0) {  // stored: LEN, its complement, the bytes
            const uint8_t* p = in.align();
            if (in.end - p < 4) damaged(in.path, "it ends inside a stored block's header");
            const uint32_t len = p[0] | p[1] << 8, nlen = p[2] | p[3] << 8;
            if (len != (~nlen & 0xffff)) damaged(in.path, "a stored block's length and its complement differ");
            if ((size_t)(in.end - p - 4) < len) damaged(in.path, "it ends inside a stored block");
            out.append((const char*)p + 4, len);
            in.p = p + 4 + len;
        } else if (type == 1 || type == 2) {
            Huffman lengths, distances;
            uint8_t l[320];
            int nlen = 288, ndist = 30;
            if (type == 1) {  // the fixed code
                for (int s = 0; s < 288; s++) l[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
                for (int s = 0; s < 30; s++) l[288 + s] = 5;
            } else {  // the code's lengths, themselves coded with lengths of the code-length code
                nlen = (int)in.bits(5) + 257;
                ndist = (int)in.bits(5) + 1;
                const int ncode = (int)in.bits(4) + 4;
                if (nlen > 286 || ndist > 30) damaged(in.path, "more codes than deflate has");
                static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
                uint8_t cl[19] = {};
                for (int i = 0; i < ncode; i++) cl[order[i]] = (uint8_t)in.bits(3);
                Huffman lencode;
                if (build(lencode, cl, 19) != 0) damaged(in.path, "an incomplete code-length code");
                for (int i = 0; i < nlen + ndist;) {
                    const int sym = decode(in, lencode);
                    if (sym < 16) {
                        l[i++] = (uint8_t)sym;
                        continue;
                    }
                    uint8_t value = 0;
                    int repeat;
                    if (sym == 16) {
                        if (i == 0) damaged(in.path, "a repeat of no length");
                        value = l[i - 1];
                        repeat = 3 + (int)in.bits(2);
                    } else {
                        repeat = sym == 17 ? 3 + (int)in.bits(3) : 11 + (int)in.bits(7);
                    }
                    if (i + repeat > nlen + ndist) damaged(in.path, "code lengths past the code");
                    while (repeat--) l[i++] = value;
                }
                if (l[256] == 0) damaged(in.path, "a block without its end code");
            }
            // a sent code may be incomplete only when it is one code (deflate's rule, as zlib has it); the
            // fixed distance code is 30 codes of 5 bits, two short of complete
            int left = build(lengths, l, nlen);
            if (left < 0 || (type == 2 && left > 0 && nlen - lengths.count[0] != 1)) damaged(in.path, "a bad literal/length code");
            left = build(distances, l + nlen, ndist);
            if (left < 0 || (type == 2 && left > 0 && ndist - distances.count[0] != 1)) damaged(in.path, "a bad distance code");
            codes(in, out, start, lengths, distances);
        } else {
            damaged(in.path, "a block of the reserved type");
        }
    }
}

uint32_t crc32(const char* data, size_t n) {
    static uint32_t table[256];
    static const bool filled = [] {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return true;
    }();
    (void)filled;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ (uint8_t)data[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

}  // namespace

bool is_gzip(std::string_view bytes) { return bytes.size() >= 2 && (uint8_t)bytes[0] == 0x1f && (uint8_t)bytes[1] == 0x8b; }

std::string gunzip(std::string_view bytes, const char* path) {
    std::string out;
    const uint8_t* p = (const uint8_t*)bytes.data();
    const uint8_t* end = p + bytes.size();
    do {
        if (end - p < 18 || p[0] != 0x1f || p[1] != 0x8b) damaged(path, "no gzip header");
        if (p[2] != 8) damaged(path, "a compression method other than deflate");
        const uint8_t flags = p[3];
        p += 10;
        const auto skip = [&](size_t n) {
            if ((size_t)(end - p) < n) damaged(path, "it ends inside its header");
            p += n;
        };
        if (flags & 4) {  // an extra field, its length first
            skip(2);
            skip(p[-2] | p[-1] << 8);
        }
        for (int field : {8, 16})  // a file name, a comment: each ends with a NUL
            if (flags & field) {
                while (p < end && *p) p++;
                skip(1);
            }
        if (flags & 2) skip(2);  // the header's CRC-16
        Bits in{p, end, path};
        const size_t start = out.size();
        inflate(in, out);
        p = in.align();
        if (end - p < 8) damaged(path, "it ends before its CRC and length");
        const uint32_t crc = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
        const uint32_t size = p[4] | p[5] << 8 | p[6] << 16 | (uint32_t)p[7] << 24;
        if (crc != crc32(out.data() + start, out.size() - start)) damaged(path, "its CRC-32 does not match its data");
        if (size != (uint32_t)(out.size() - start)) damaged(path, "its length does not match its data");
        p += 8;
        while (p < end && *p == 0) p++;  // padding some tools write after the last member
    } while (p < end);
    return out;
}
