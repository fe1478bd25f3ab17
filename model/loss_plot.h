// The loss curve of a run as an SVG picture, drawn from the run's CSV log.
#pragma once
#include <string>

// Reads log.csv (columns step,loss,...,val_loss as ./train writes them) and writes an SVG with the
// training loss per step and the validation loss points. Works for resumed runs too: the log is
// appended across them.
void write_loss_plot(const std::string& csv_path, const std::string& svg_path);
