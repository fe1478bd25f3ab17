#include "model/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "model/util.h"

namespace {
struct Point { double x, y; };

// Data ranges mapped onto the plot area 60..620 × 20..340 of a 640×380 picture.
struct Frame {
    double x0 = 1e300, x1 = -1e300, y0 = 0.0, y1 = -1e300;
    double sx(double x) const { return 60 + 560 * (x - x0) / (x1 - x0); }
    double sy(double y) const { return 340 - 320 * (y - y0) / (y1 - y0); }
};
}  // namespace

void write_loss_plot(const std::string& csv_path, const std::string& svg_path) {
    std::istringstream in(read_file(csv_path));
    std::string line;
    std::vector<Point> train, val;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        const std::vector<std::string> col = split(line, ',');
        if (col[0].empty()) continue;
        double step = atof(col[0].c_str());
        if (col.size() > 1 && !col[1].empty()) train.push_back({step, atof(col[1].c_str())});
        if (col.size() > 7 && !col[7].empty()) val.push_back({step, atof(col[7].c_str())});
    }
    if (train.empty() && val.empty()) return;
    Frame f;
    for (const auto* set : {&train, &val})
        for (const Point& p : *set) {
            f.x0 = std::min(f.x0, p.x); f.x1 = std::max(f.x1, p.x); f.y1 = std::max(f.y1, p.y);
        }
    if (f.x1 <= f.x0) f.x1 = f.x0 + 1;
    if (f.y1 <= 0) f.y1 = 1;
    std::ostringstream svg;
    svg << "<svg xmlns='http://www.w3.org/2000/svg' width='640' height='380' font-family='sans-serif' font-size='12'>\n"
        << "<rect width='640' height='380' fill='white'/>\n"
        << "<line x1='60' y1='340' x2='620' y2='340' stroke='black'/><line x1='60' y1='20' x2='60' y2='340' stroke='black'/>\n";
    for (int i = 0; i <= 4; i++) {
        double y = f.y1 * i / 4, x = f.x0 + (f.x1 - f.x0) * i / 4;
        svg << "<text x='54' y='" << f.sy(y) + 4 << "' text-anchor='end'>" << std::round(y * 100) / 100 << "</text>\n"
            << "<text x='" << f.sx(x) << "' y='356' text-anchor='middle'>" << std::round(x) << "</text>\n";
    }
    svg << "<text x='340' y='374' text-anchor='middle'>step</text>\n"
        << "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='";
    for (const Point& p : train) svg << f.sx(p.x) << "," << f.sy(p.y) << " ";
    svg << "'/>\n";
    for (const Point& p : val)
        svg << "<circle cx='" << f.sx(p.x) << "' cy='" << f.sy(p.y) << "' r='4' fill='#d62728'/>\n";
    svg << "<text x='480' y='36' fill='#1f77b4'>training loss</text><text x='480' y='52' fill='#d62728'>validation loss</text>\n"
        << "</svg>\n";
    std::string s = svg.str();
    AtomicFile out(svg_path);
    out.write(s.data(), s.size());
    out.commit();
}
