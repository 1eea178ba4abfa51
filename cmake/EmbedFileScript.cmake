file(READ ${INPUT} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${content}")
file(WRITE ${OUTPUT}
  "// Generated from ${INPUT}; do not edit.\n#include <string_view>\nnamespace hylab::embedded {\n"
  "static const char k${SYMBOL}[] = {${bytes} '\\0'};\n"
  "extern const std::string_view ${SYMBOL}(k${SYMBOL}, sizeof(k${SYMBOL}) - 1);\n}\n")
