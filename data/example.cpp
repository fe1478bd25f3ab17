#include "data/example.h"

#include <algorithm>

#include "model/util.h"

size_t response_tokens(const Example& e) {
    size_t n = 0;
    for (size_t i = 1; i < e.weights.size(); i++) n += e.weights[i] >= 1.0f;
    return n;
}

void group_by_length(std::vector<size_t>& order, const std::vector<Example>& examples, size_t group) {
    const size_t n = order.size();
    if (n == 0 || group == 0) return;
    const size_t mult = std::max<size_t>(1, std::min<size_t>(n / (group * 4), 50)), mega = mult * group;
    auto longer = [&](size_t a, size_t b) { return examples[a].size() > examples[b].size(); };
    size_t longest_mega = 0;
    for (size_t start = 0; start < n; start += mega) {
        const auto first = order.begin() + start, last = order.begin() + std::min(n, start + mega);
        std::stable_sort(first, last, longer);
        // the first mega-batch whose head is the longest (torch.argmax: the first of equal maxima)
        if (longer(*first, order[longest_mega])) longest_mega = start;
    }
    std::swap(order[0], order[longest_mega]);
}

size_t fill_batch(const std::vector<Example>& examples, const std::vector<size_t>& order, size_t start,
                  const BatchOptions& opt, Batch& b) {
    if (opt.batch_size < 1 || opt.max_seq_len < 2)
        fail("fill_batch: batch size %d and max_seq_len %d must be >= 1 and >= 2", opt.batch_size, opt.max_seq_len);
    if (start >= order.size()) fail("fill_batch: start %zu is past the %zu examples", start, order.size());

    // First decide which examples go to which row, then lay them out once T is known.
    std::vector<std::vector<size_t>> rows;
    std::vector<int> row_len;
    size_t next = start;
    while (next < order.size()) {
        size_t idx = order[next];
        if (idx >= examples.size()) fail("fill_batch: order[%zu] = %zu is past the %zu examples", next, idx, examples.size());
        const Example& e = examples[idx];
        int n = (int)e.size();
        if (n < 2 || n > opt.max_seq_len || e.weights.size() != e.tokens.size())
            fail("fill_batch: the example from line %d has %d tokens (%zu weights); it must have 2..%d "
                 "(the length policy should have dropped or cut it)", e.line, n, e.weights.size(), opt.max_seq_len);
        bool fits_last = opt.packing && !rows.empty() && row_len.back() + n <= opt.max_seq_len;
        if (!fits_last) {
            if ((int)rows.size() == opt.batch_size) break;
            rows.emplace_back();
            row_len.push_back(0);
        }
        rows.back().push_back(idx);
        row_len.back() += n;
        next++;
    }

    int T = opt.padding == Padding::max_length ? opt.max_seq_len : *std::max_element(row_len.begin(), row_len.end());
    b.resize((int)rows.size(), T);
    for (size_t r = 0; r < rows.size(); r++) {
        size_t at = r * (size_t)T;
        for (size_t s = 0; s < rows[r].size(); s++) {
            const Example& e = examples[rows[r][s]];
            size_t n = e.size();
            for (size_t t = 0; t < n; t++, at++) {
                b.tokens[at] = e.tokens[t];
                bool last = t + 1 == n;
                b.targets[at] = last ? 0 : e.tokens[t + 1];
                b.weights[at] = last ? 0.0f : e.weights[t + 1];
                b.pos[at] = (int32_t)t;
                b.seg[at] = (int32_t)s;
            }
        }
    }
    return next - start;
}
