// Wall-clock time as Unix seconds, the unit of every time the store records.
#pragma once

#include <chrono>

namespace hylab {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace hylab
