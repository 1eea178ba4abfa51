#include "common/diagnostics.h"

#include <algorithm>
#include <tuple>

namespace hylab {

std::string Diagnostic::str() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  out += severity == Severity::kError ? ": error: " : ": warning: ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

void Diagnostics::error(std::string file, int line, int column, std::string key,
                        std::string message) {
  items_.push_back({Diagnostic::Severity::kError, std::move(file), line, column, std::move(key),
                    std::move(message)});
}

void Diagnostics::warning(std::string file, int line, int column, std::string key,
                          std::string message) {
  items_.push_back({Diagnostic::Severity::kWarning, std::move(file), line, column, std::move(key),
                    std::move(message)});
}

bool Diagnostics::has_errors() const { return error_count() > 0; }

std::size_t Diagnostics::error_count() const {
  return static_cast<std::size_t>(std::count_if(items_.begin(), items_.end(), [](const auto& d) {
    return d.severity == Diagnostic::Severity::kError;
  }));
}

std::string Diagnostics::str() const {
  // In file order, so a person can fix them top to bottom.
  std::vector<const Diagnostic*> sorted;
  for (const auto& d : items_) sorted.push_back(&d);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Diagnostic* a, const Diagnostic* b) {
    return std::tie(a->file, a->line, a->column) < std::tie(b->file, b->line, b->column);
  });
  std::string out;
  for (const auto* d : sorted) out += d->str() + '\n';
  return out;
}

void Diagnostics::append(const Diagnostics& other) {
  items_.insert(items_.end(), other.items_.begin(), other.items_.end());
}

}  // namespace hylab
