// Just enough XML for S3's answers (listings, multipart uploads, errors): the text of
// flat elements, with the five entities and numeric references decoded. S3's answers are
// generated, flat and small; a general XML parser would buy nothing here. Any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hylab::storage {

// The decoded text of the first <tag>...</tag> in `doc`, "" when absent.
std::string xml_text(std::string_view doc, std::string_view tag);
// The raw inner text of every <tag>...</tag> in `doc`, in order.
std::vector<std::string_view> xml_blocks(std::string_view doc, std::string_view tag);
std::string xml_unescape(std::string_view s);
std::string xml_escape(std::string_view s);

}  // namespace hylab::storage
