// cudapp: rewrites a CUDA source file into C++ for the emulator (tests/emu/README.md).
//     cudapp kernels/cuda/x.cu build/emu/kernels/cuda/x.cpp
// Only three constructs are not C++ (or cannot be given CUDA's meaning by a macro); everything else
// is left as it is, and the output starts with `#line 1 "<input>"` and keeps every line where it
// was, so compiler messages, __LINE__ and the emulator's reports point into the original source.
//
//   k<<<grid, block[, smem[, stream]]>>>(args)
//       -> emu::launch("k", __FILE__, __LINE__, emu::config(grid, block[, smem[, stream]]),
//                      [&](auto&... emu_a) { k(emu_a...); }, args)
//   __shared__ T a[N], b[M];          (static shared memory, in a function)
//       -> static emu::SharedSlot emu_smem_a; auto& a = emu_smem_a.get<T[N]>("a"); (same for b)
//   extern __shared__ __align__(16) T s[];   (dynamic shared memory)
//       -> T* s = emu::dynamic_smem<T>("s", 16);
//   __global__ void __launch_bounds__(n) k(...) { body }
//       -> __global__ void k(...) { emu::launch_bounds(n); body }
//
// Comments, string and character literals and preprocessor lines are never rewritten. Anything
// unexpected around these constructs stops the build with file:line rather than guessing.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string path, src, code;  // code: src with comments, literals and directives blanked (newlines kept)

[[noreturn]] void die(size_t pos, const std::string& msg) {
    int line = 1;
    for (size_t i = 0; i < pos && i < src.size(); i++) line += src[i] == '\n';
    fprintf(stderr, "%s:%d: cudapp: %s\n", path.c_str(), line, msg.c_str());
    exit(1);
}

bool ident(char c) { return isalnum((unsigned char)c) || c == '_'; }

void blank(size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        if (code[i] != '\n') code[i] = ' ';
}

void make_code() {
    code = src;
    const size_t n = src.size();
    bool line_start = true;  // only blanks since the last newline
    for (size_t i = 0; i < n;) {
        const char c = src[i];
        if (c == '/' && i + 1 < n && src[i + 1] == '/') {
            size_t e = src.find('\n', i);
            e = e == std::string::npos ? n : e;
            blank(i, e), i = e;
        } else if (c == '/' && i + 1 < n && src[i + 1] == '*') {
            size_t e = src.find("*/", i + 2);
            if (e == std::string::npos) die(i, "unterminated comment");
            blank(i, e + 2), i = e + 2;
        } else if (c == '#' && line_start) {  // a directive, with its continuation lines
            size_t e = i;
            while (e < n && !(src[e] == '\n' && src[e - 1] != '\\')) e++;
            blank(i, e), i = e;
        } else if (c == '"' && i > 0 && src[i - 1] == 'R') {  // raw string R"delim( ... )delim"
            size_t open = src.find('(', i);
            if (open == std::string::npos) die(i, "bad raw string");
            std::string end = ")" + src.substr(i + 1, open - i - 1) + "\"";
            size_t e = src.find(end, open);
            if (e == std::string::npos) die(i, "unterminated raw string");
            blank(i, e + end.size()), i = e + end.size();
        } else if (c == '"' || (c == '\'' && !(i > 0 && isxdigit((unsigned char)src[i - 1]) && i + 1 < n &&
                                                isxdigit((unsigned char)src[i + 1])))) {  // not a digit separator
            size_t e = i + 1;
            while (e < n && src[e] != c) e += src[e] == '\\' ? 2 : 1;
            if (e >= n) die(i, "unterminated literal");
            blank(i, e + 1), i = e + 1;
        } else {
            i++;
        }
        if (i < n) line_start = src[i - 1] == '\n' || (line_start && isspace((unsigned char)src[i - 1]));
    }
}

// The whole word w at pos (in code).
bool word_at(size_t pos, const char* w) {
    size_t len = strlen(w);
    return code.compare(pos, len, w) == 0 && (pos == 0 || !ident(code[pos - 1])) &&
           (pos + len >= code.size() || !ident(code[pos + len]));
}

size_t skip_ws(size_t i) {
    while (i < code.size() && isspace((unsigned char)code[i])) i++;
    return i;
}

// The bracket matching the one at `open` (in code): () [] {} or <> (then only <> count).
size_t match(size_t open) {
    const char o = code[open], c = o == '(' ? ')' : o == '[' ? ']' : o == '{' ? '}' : '>';
    int depth = 0;
    for (size_t i = open; i < code.size(); i++) {
        if (code[i] == o) depth++;
        else if (code[i] == c && --depth == 0) return i;
    }
    die(open, std::string("no matching ") + c);
}

std::string trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\n"), e = s.find_last_not_of(" \t\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}
std::string one_line(std::string s) {
    for (char& ch : s)
        if (ch == '\n') ch = ' ';
    return s;
}
int newlines(const std::string& s) {
    int k = 0;
    for (char ch : s) k += ch == '\n';
    return k;
}

struct Edit {
    size_t begin, end;
    std::string text;
};
std::vector<Edit> edits;

// Replaces [begin, end) with text, padded with the newlines it removes (lines stay where they were).
void replace(size_t begin, size_t end, const std::string& text) {
    int lost = newlines(src.substr(begin, end - begin)) - newlines(text);
    if (lost < 0) die(begin, "internal: the replacement has more lines than the original");
    edits.push_back({begin, end, text + std::string(lost, '\n')});
}

void launch_bounds() {
    for (size_t p = 0; (p = code.find("__launch_bounds__", p)) != std::string::npos; p++) {
        if (!word_at(p, "__launch_bounds__")) continue;
        size_t open = skip_ws(p + 17);
        if (code[open] != '(') die(p, "__launch_bounds__ without arguments");
        size_t close = match(open);
        std::string args = one_line(src.substr(open + 1, close - open - 1));
        replace(p, close + 1, "");
        int depth = 0;  // the body: the first { outside parentheses; a ; first means a declaration
        size_t i = close + 1;
        for (; i < code.size(); i++) {
            if (code[i] == '(') depth++;
            else if (code[i] == ')') depth--;
            else if (depth == 0 && (code[i] == '{' || code[i] == ';')) break;
        }
        if (i < code.size() && code[i] == '{') edits.push_back({i + 1, i + 1, " emu::launch_bounds(" + args + ");"});
    }
}

// `__shared__` declarations: static ones become SharedSlots, extern ones the dynamic shared memory.
void shared() {
    for (size_t p = 0; (p = code.find("__shared__", p)) != std::string::npos; p++) {
        if (!word_at(p, "__shared__")) continue;
        size_t begin = p, q = p;  // `extern` before it?
        while (q > 0 && isspace((unsigned char)code[q - 1])) q--;
        const bool ext = q >= 6 && word_at(q - 6, "extern");
        if (ext) begin = q - 6;
        size_t semi = code.find(';', p);
        if (semi == std::string::npos) die(p, "__shared__ declaration without ;");
        std::string decl = code.substr(p + 10, semi - p - 10), align;
        for (const char* kw : {"__align__", "alignas"}) {  // pull out an alignment
            size_t a = decl.find(kw);
            if (a == std::string::npos) continue;
            size_t open = decl.find('(', a), close = decl.find(')', a);
            align = trim(decl.substr(open + 1, close - open - 1));
            decl.erase(a, close + 1 - a);
        }
        std::vector<std::string> parts;  // declarators, split at top-level commas
        int depth = 0;
        size_t start = 0;
        for (size_t i = 0; i < decl.size(); i++) {
            char c = decl[i];
            depth += c == '(' || c == '[' || c == '<' ? 1 : c == ')' || c == ']' || c == '>' ? -1 : 0;
            if (c == ',' && depth == 0) parts.push_back(decl.substr(start, i - start)), start = i + 1;
        }
        parts.push_back(decl.substr(start));
        std::string type, out;
        for (size_t k = 0; k < parts.size(); k++) {
            std::string d = trim(parts[k]);
            size_t br = d.find('['), name_end = br == std::string::npos ? d.size() : br;
            while (name_end > 0 && isspace((unsigned char)d[name_end - 1])) name_end--;
            size_t name_begin = name_end;
            while (name_begin > 0 && ident(d[name_begin - 1])) name_begin--;
            std::string name = d.substr(name_begin, name_end - name_begin);
            std::string dims = br == std::string::npos ? "" : trim(d.substr(br));
            if (k == 0) type = trim(d.substr(0, name_begin));
            else if (!trim(d.substr(0, name_begin)).empty()) die(p, "unsupported __shared__ declarator: " + d);
            if (name.empty() || isdigit((unsigned char)name[0]) || type.empty() ||
                type.find_first_of("*&") != std::string::npos)
                die(p, "unsupported __shared__ declaration (expected `__shared__ T name[dims];`): " + trim(decl));
            const std::string al = align.empty() ? "" : ", " + align;
            if (ext) {
                if (parts.size() != 1 || dims != "[]") die(p, "extern __shared__ must declare one array `T name[]`");
                out += type + "* " + name + " = emu::dynamic_smem<" + type + ">(\"" + name + "\"" + al + ");";
            } else {
                out += "static emu::SharedSlot emu_smem_" + name + "; auto& " + name + " = emu_smem_" + name + ".get<" +
                       type + dims + ">(\"" + name + "\"" + al + "); ";
            }
        }
        replace(begin, semi + 1, one_line(out));
        p = semi;
    }
}

// k<<<config>>>(args)
void launches() {
    for (size_t p = 0; (p = code.find("<<<", p)) != std::string::npos; p += 3) {
        size_t k = p;  // the kernel: an identifier (maybe qualified) with maybe template arguments
        while (k > 0 && isspace((unsigned char)code[k - 1])) k--;
        if (k > 0 && code[k - 1] == '>') {
            int depth = 0;
            do {
                k--;
                depth += code[k] == '>' ? 1 : code[k] == '<' ? -1 : 0;
            } while (k > 0 && depth > 0);
            while (k > 0 && isspace((unsigned char)code[k - 1])) k--;
        }
        while (k > 0 && (ident(code[k - 1]) || code[k - 1] == ':')) k--;
        std::string kernel = trim(src.substr(k, p - k));
        if (kernel.empty() || !(isalpha((unsigned char)kernel[0]) || kernel[0] == '_' || kernel[0] == ':'))
            die(p, "<<< without a kernel name before it");
        size_t cfg_end = code.find(">>>", p + 3);
        if (cfg_end == std::string::npos) die(p, "<<< without >>>");
        size_t open = skip_ws(cfg_end + 3);
        if (code[open] != '(') die(p, "kernel launch without an argument list");
        size_t close = match(open);
        std::string cfg = src.substr(p + 3, cfg_end - p - 3), args = src.substr(open + 1, close - open - 1);
        std::string k1 = one_line(kernel);
        std::string text = "emu::launch(\"" + k1 + "\", __FILE__, __LINE__, emu::config(" + cfg +
                           "), [&](auto&... emu_a) { " + k1 + "(emu_a...); }" +
                           (trim(args).empty() ? "" : ", " + args) + ")";
        replace(k, close + 1, text);
        p = close;
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: cudapp input.cu output.cpp\n");
        return 2;
    }
    path = argv[1];
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        fprintf(stderr, "cudapp: cannot read %s\n", argv[1]);
        return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    src = ss.str();
    make_code();
    launch_bounds();
    shared();
    launches();
    std::string out = "#line 1 \"" + path + "\"\n";
    size_t at = 0;
    std::stable_sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.begin < b.begin; });
    for (const Edit& e : edits) {
        if (e.begin < at) die(e.begin, "internal: overlapping rewrites");
        out += src.substr(at, e.begin - at) + e.text;
        at = e.end;
    }
    out += src.substr(at);
    std::ofstream o(argv[2], std::ios::binary);
    o << out;
    return o ? 0 : 1;
}
