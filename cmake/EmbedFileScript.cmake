file(READ ${INPUT} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${content}")
file(WRITE ${OUTPUT}
  "// Generated from ${INPUT}; do not edit.\n#include <string_view>\nnamespace hylab::embedded {\n"
  "static const char data_${SYMBOL}[] = {${bytes} '\\0'};\n"
  "extern const std::string_view ${SYMBOL}(data_${SYMBOL}, sizeof(data_${SYMBOL}) - 1);\n}\n")
