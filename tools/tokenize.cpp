// ./tokenize: the tokenizer from the command line. Text on stdin → ids on stdout (space separated);
// --decode turns ids back into text; --show lists each token with its id so a user can see how text
// is split; --save converts a tokenizer.json or tokenizer.model into our .tok file.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <string>

#include "model/util.h"
#include "tokenizer/tokenizer.h"
#include "tools/cli.h"
#include "tokenizer/unicode.h"

static const char* kUsage =
    "usage: tokenize --tokenizer PATH [options] < input\n"
    "  --tokenizer PATH   tokenizer.json (Hugging Face), tokenizer.model (SentencePiece) or .tok\n"
    "  --decode           read ids (whitespace separated) and write the text they stand for\n"
    "  --show             write one line per token: id, then the token's bytes quoted\n"
    "  --no-special       treat special tokens in the text (<|im_start|>) as plain text\n"
    "  --save OUT.tok     write the tokenizer in our .tok format and exit\n";

// A token's bytes in double quotes, readable whatever they are: control characters and bytes
// that are not valid UTF-8 (a token can hold part of a character) are escaped.
static std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        uint32_t cp;
        size_t n = utf8_decode(s, i, cp);
        char buf[8];
        if (cp == '"' || cp == '\\') out += '\\', out += (char)cp;
        else if (cp == '\n') out += "\\n";
        else if (cp == '\t') out += "\\t";
        else if (cp == kInvalidCodepoint || cp < 0x20 || cp == 0x7F) snprintf(buf, sizeof buf, "\\x%02X", (uint8_t)s[i]), out += buf;
        else out.append(s, i, n);
        i += n;
    }
    return out + "\"";
}

static std::vector<int32_t> read_ids(const std::string& text, const Tokenizer& tok) {
    std::vector<int32_t> ids;
    size_t i = 0;
    for (int n = 1;; n++) {
        i = text.find_first_not_of(" \t\r\n", i);
        if (i == std::string::npos) break;
        size_t e = text.find_first_of(" \t\r\n", i);
        std::string word = text.substr(i, e == std::string::npos ? std::string::npos : e - i);
        char* end;
        long v = std::strtol(word.c_str(), &end, 10);
        if (*end || word.empty() || v < 0 || (size_t)v >= tok.vocab.size())
            fail("stdin: item %d '%s' is not a token id (0..%zu)", n, word.c_str(), tok.vocab.size() - 1);
        ids.push_back((int32_t)v);
        i = e;
    }
    return ids;
}

int main(int argc, char** argv) {
    return run_main([&] {
        std::string tok_path, save_path;
        bool do_decode = false, show = false, special = true;
        Args args(argc, argv, "see ./tokenize --help");
        while (args.next()) {
            if (args.is("--tokenizer")) tok_path = args.value();
            else if (args.is("--decode")) do_decode = true;
            else if (args.is("--show")) show = true;
            else if (args.is("--no-special")) special = false;
            else if (args.is("--save")) save_path = args.value();
            else if (args.is("-h") || args.is("--help")) { std::printf("%s", kUsage); return 0; }
            else args.unknown();
        }
        if (tok_path.empty()) fail("--tokenizer PATH is required\n%s", kUsage);
        if (tok_path == "bytes")
            fail("--tokenizer bytes is ./train's raw-byte encoding (each UTF-8 byte its id): there is no tokenizer to run");
        if (do_decode && show) fail("--decode and --show cannot be combined: --show already prints each token's text");
        Tokenizer tok = tokenizer_load_any(tok_path);
        if (!save_path.empty()) {
            tokenizer_save(tok, save_path);
            std::printf("wrote %s: %s\n", save_path.c_str(), tokenizer_describe(tok).c_str());
            return 0;
        }
        std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
        if (do_decode) {
            std::string text = decode(tok, read_ids(input, tok));
            fwrite(text.data(), 1, text.size(), stdout);
        } else {
            std::vector<int32_t> ids = encode(tok, input, special);
            // Bytes the vocabulary has no token for (never in valid UTF-8) are dropped by encode(): say so
            std::vector<bool> missing(256, false);
            for (uint8_t b : tokenizer_missing_bytes(tok)) missing[b] = true;
            size_t dropped = 0;
            int first = -1;
            for (unsigned char c : input)
                if (missing[c]) dropped++, first = first < 0 ? c : first;
            for (size_t i = 0; i < ids.size(); i++) {
                if (show) std::printf("%d\t%s\n", ids[i], quoted(decode_token(tok, ids[i])).c_str());
                else std::printf(i ? " %d" : "%d", ids[i]);
            }
            if (!show) std::printf("\n");
            check_written(stdout, "standard output");  // the ids before the note below
            if (dropped)
                std::fprintf(stderr, "note: %zu byte(s) of the input (the first 0x%02X) have no token in this vocabulary "
                                     "and were dropped: they never occur in valid UTF-8 text\n", dropped, first);
        }
        return 0;
    });
}
