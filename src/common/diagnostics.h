// Diagnostics: errors and warnings about a user's file, each pointing at file:line:column
// and the key, collected so that one run reports every problem at once. Not thread-safe:
// one collector per load.
#pragma once

#include <string>
#include <vector>

namespace hylab {

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string file;
  int line = 0;     // 1-based; 0 when the problem concerns the whole file
  int column = 0;   // 1-based
  std::string key;  // dotted path of the key, e.g. "resources.accelerators"
  std::string message;

  // "jobs/a.yaml:12:5: error: resources.accelerators: unknown GPU model 'A1000' (did you mean
  // 'A100'?)"
  std::string str() const;
};

class Diagnostics {
 public:
  void error(std::string file, int line, int column, std::string key, std::string message);
  void warning(std::string file, int line, int column, std::string key, std::string message);
  void add(Diagnostic d) { items_.push_back(std::move(d)); }

  bool has_errors() const;
  std::size_t error_count() const;
  const std::vector<Diagnostic>& items() const { return items_; }
  // Every diagnostic, one per line.
  std::string str() const;
  void append(const Diagnostics& other);

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace hylab
