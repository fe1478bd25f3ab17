// The batch builder: padding, packing isolation, weights/targets alignment, cursor arithmetic.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "data/example.h"

namespace {

// An example whose tokens are base, base+1, ... and whose weights are 0 for the first `prompt`
// tokens and 1 after (weights[0] is 0 anyway).
Example make_example(int n, int prompt, int base, int line) {
    Example e;
    e.line = line;
    for (int i = 0; i < n; i++) {
        e.tokens.push_back(base + i);
        e.weights.push_back(i == 0 || i < prompt ? 0.0f : 1.0f);
    }
    return e;
}

std::vector<size_t> iota_order(size_t n) {
    std::vector<size_t> o(n);
    std::iota(o.begin(), o.end(), 0);
    return o;
}

// What a position may see under batch.h's rules: keys of the same segment at earlier or equal
// positions of its row. Written out as "token@pos" so two layouts can be compared.
std::string visible_context(const Batch& b, int row, int t) {
    std::string s;
    int at = row * b.T + t;
    for (int k = 0; k <= t; k++) {
        int ak = row * b.T + k;
        if (b.seg[ak] == b.seg[at]) s += std::to_string(b.tokens[ak]) + "@" + std::to_string(b.pos[ak]) + " ";
    }
    return s;
}

}  // namespace

TEST_CASE("fill_batch without packing: one example per row, dynamic padding to the longest") {
    std::vector<Example> ex = {make_example(5, 2, 100, 1), make_example(3, 1, 200, 2), make_example(7, 3, 300, 3)};
    BatchOptions o;
    o.batch_size = 2;
    o.max_seq_len = 16;
    Batch b;
    auto order = iota_order(3);
    CHECK(fill_batch(ex, order, 0, o, b) == 2);
    CHECK(b.B == 2);
    CHECK(b.T == 5);
    // Row 0: inputs 100..104, targets shifted by one, weight of predicting tokens[t+1].
    for (int t = 0; t < 4; t++) {
        CHECK(b.tokens[t] == 100 + t);
        CHECK(b.targets[t] == 101 + t);
        CHECK(b.weights[t] == ex[0].weights[t + 1]);
        CHECK(b.pos[t] == t);
        CHECK(b.seg[t] == 0);
    }
    CHECK(b.weights[4] == 0.0f);  // the last token predicts nothing
    // Row 1: three tokens, then two padding positions with weight 0 and segment -1.
    CHECK(b.tokens[5] == 200);
    CHECK(b.targets[6] == 202);
    CHECK(b.weights[6] == 1.0f);
    for (int t = 3; t < 5; t++) {
        CHECK(b.weights[5 + t] == 0.0f);
        CHECK(b.seg[5 + t] == -1);
    }
    // The next call continues where the cursor stopped and uses fewer rows at the end.
    CHECK(fill_batch(ex, order, 2, o, b) == 1);
    CHECK(b.B == 1);
    CHECK(b.T == 7);
}

TEST_CASE("fill_batch max_length padding pads to max_seq_len and keeps the same supervision") {
    std::vector<Example> ex = {make_example(5, 2, 100, 1), make_example(3, 1, 200, 2)};
    BatchOptions o;
    o.batch_size = 2;
    o.max_seq_len = 12;
    Batch a, b;
    fill_batch(ex, iota_order(2), 0, o, a);
    o.padding = Padding::max_length;
    fill_batch(ex, iota_order(2), 0, o, b);
    CHECK(b.T == 12);
    CHECK(a.total_weight() == b.total_weight());
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < b.T; t++) {
            int ib = r * b.T + t;
            if (t < a.T) {
                int ia = r * a.T + t;
                CHECK(a.tokens[ia] == b.tokens[ib]);
                CHECK(a.weights[ia] == b.weights[ib]);
                CHECK(a.seg[ia] == b.seg[ib]);
            } else {
                CHECK(b.weights[ib] == 0.0f);
                CHECK(b.seg[ib] == -1);
            }
        }
}

TEST_CASE("packing: each packed example sees exactly what it sees alone") {
    std::vector<Example> ex;
    for (int i = 0; i < 9; i++) ex.push_back(make_example(3 + (i * 5) % 7, 2, 1000 * (i + 1), i + 1));
    BatchOptions alone;
    alone.batch_size = 1;
    alone.max_seq_len = 16;
    BatchOptions packed = alone;
    packed.batch_size = 3;
    packed.packing = true;
    auto order = iota_order(ex.size());

    Batch pb;
    size_t took = fill_batch(ex, order, 0, packed, pb);
    REQUIRE(took >= 4);  // packing put more than one example in some row
    size_t total_len = 0;
    for (size_t i = 0; i < took; i++) total_len += ex[i].size();
    double packed_weight = pb.total_weight();

    // Walk the packed rows segment by segment and compare each with the example's own batch.
    size_t next = 0;
    double alone_weight = 0;
    for (int r = 0; r < pb.B; r++) {
        int t = 0;
        for (int s = 0; t < pb.T && pb.seg[r * pb.T + t] != -1; s++) {
            Batch ab;
            REQUIRE(fill_batch(ex, order, next++, alone, ab) == 1);
            alone_weight += ab.total_weight();
            for (int u = 0; u < ab.T; u++, t++) {
                int at = r * pb.T + t;
                CHECK(pb.seg[at] == s);
                CHECK(pb.pos[at] == ab.pos[u]);
                CHECK(pb.tokens[at] == ab.tokens[u]);
                CHECK(pb.targets[at] == ab.targets[u]);
                CHECK(pb.weights[at] == ab.weights[u]);
                CHECK(visible_context(pb, r, t) == visible_context(ab, 0, u));
            }
        }
        for (; t < pb.T; t++) CHECK(pb.weights[r * pb.T + t] == 0.0f);
    }
    CHECK(next == took);
    CHECK(packed_weight == alone_weight);
    // Greedy packing wastes little: fewer positions than one example per row would need.
    CHECK((size_t)pb.B * pb.T < took * 16);
    CHECK(total_len <= (size_t)pb.B * pb.T);
}

TEST_CASE("packing keeps order and stops when the rows are full") {
    std::vector<Example> ex;
    for (int i = 0; i < 6; i++) ex.push_back(make_example(6, 1, 10 * i, i + 1));
    BatchOptions o;
    o.batch_size = 2;
    o.max_seq_len = 13;  // two examples of 6 fit in a row, three do not
    o.packing = true;
    std::vector<size_t> order = {5, 4, 3, 2, 1, 0};
    Batch b;
    CHECK(fill_batch(ex, order, 1, o, b) == 4);
    CHECK(b.B == 2);
    CHECK(b.T == 12);
    CHECK(b.tokens[0] == 40);
    CHECK(b.tokens[6] == 30);
    CHECK(b.seg[6] == 1);
    CHECK(b.pos[6] == 0);
    CHECK(b.tokens[12] == 20);
    CHECK(b.tokens[18] == 10);
}

TEST_CASE("fill_batch refuses examples the length policy should have handled") {
    std::vector<Example> ex = {make_example(20, 1, 0, 7)};
    BatchOptions o;
    o.max_seq_len = 16;
    Batch b;
    CHECK_THROWS_WITH(fill_batch(ex, iota_order(1), 0, o, b), doctest::Contains("line 7"));
    CHECK_THROWS(fill_batch(ex, iota_order(1), 1, o, b));
}

// transformers' get_length_grouped_indices after its randperm (here the identity, so the expected
// orders follow by hand): mega-batches of group × min(n / (4·group), 50), each sorted longest first
// (stable), the longest head swapped to the front.
TEST_CASE("group_by_length: transformers' mega-batches, sorted longest first, the longest example first") {
    auto examples = [](std::vector<int> lengths) {
        std::vector<Example> ex;
        for (int n : lengths) ex.push_back(make_example(n, 1, 0, (int)ex.size() + 1));
        return ex;
    };
    auto grouped = [](const std::vector<Example>& ex, size_t group) {
        std::vector<size_t> order(ex.size());
        std::iota(order.begin(), order.end(), 0);
        group_by_length(order, ex, group);
        return order;
    };
    // n 10, group 2: mega-batches of 2 (10 / 8 = 1); the longest (9, twice) heads the first already
    const std::vector<Example> a = examples({3, 9, 4, 9, 2, 7, 5, 8, 6, 1});
    CHECK(grouped(a, 2) == std::vector<size_t>{1, 0, 3, 2, 5, 4, 7, 6, 8, 9});
    // the longest in the second mega-batch: its head and the first's swap
    const std::vector<Example> b = examples({3, 4, 9, 2, 5, 5});
    CHECK(grouped(b, 2) == std::vector<size_t>{2, 0, 1, 3, 4, 5});  // [1, 0] [2, 3] [4, 5] -> 2 first
    // n 1000, group 8: mega-batches of 8 × 31 = 248 (the last 8 of 1000 alone)
    std::vector<int> lengths;
    for (int i = 0; i < 1000; i++) lengths.push_back(2 + (i * 7919) % 500);
    const std::vector<Example> c = examples(lengths);
    const std::vector<size_t> order = grouped(c, 8);
    std::vector<size_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); i++) REQUIRE(sorted[i] == i);  // a permutation
    CHECK(c[order[0]].size() == 501);  // the longest of all first
    for (size_t start : {0, 248, 496, 744, 992})
        for (size_t i = start + 2; i < std::min<size_t>(1000, start + 248); i++) CHECK(c[order[i - 1]].size() >= c[order[i]].size());
    CHECK(c[order[247]].size() < c[order[248]].size());  // a new mega-batch starts long again
}
