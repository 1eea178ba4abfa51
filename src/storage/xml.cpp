// Just enough XML for S3's answers (see xml.h).
#include "storage/xml.h"

#include <cstdlib>

namespace hylab::storage {
namespace {

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Finds "<tag>" or "<tag attr...>" from `from`; returns the position after '>' or npos.
std::size_t open_tag(std::string_view doc, std::string_view tag, std::size_t from,
                     std::size_t* start) {
  for (;;) {
    std::size_t p = doc.find('<', from);
    if (p == std::string_view::npos) return p;
    std::size_t q = p + 1;
    if (doc.substr(q, tag.size()) == tag && q + tag.size() < doc.size()) {
      char c = doc[q + tag.size()];
      if (c == '>' || c == ' ' || c == '/') {
        std::size_t end = doc.find('>', q);
        if (end == std::string_view::npos) return end;
        if (doc[end - 1] == '/') {  // <tag/>: empty
          *start = end + 1;
          return end + 1;
        }
        *start = end + 1;
        return end + 1;
      }
    }
    from = q;
  }
}

}  // namespace

std::vector<std::string_view> xml_blocks(std::string_view doc, std::string_view tag) {
  std::vector<std::string_view> out;
  std::string close = "</" + std::string(tag) + ">";
  std::size_t from = 0;
  for (;;) {
    std::size_t start = 0;
    std::size_t p = open_tag(doc, tag, from, &start);
    if (p == std::string_view::npos) break;
    if (doc[p - 2] == '/') {
      out.emplace_back();
      from = p;
      continue;
    }
    std::size_t end = doc.find(close, start);
    if (end == std::string_view::npos) break;
    out.push_back(doc.substr(start, end - start));
    from = end + close.size();
  }
  return out;
}

std::string xml_text(std::string_view doc, std::string_view tag) {
  std::string close = "</" + std::string(tag) + ">";
  std::size_t start = 0;
  std::size_t p = open_tag(doc, tag, 0, &start);
  if (p == std::string_view::npos || doc[p - 2] == '/') return "";
  std::size_t end = doc.find(close, start);
  if (end == std::string_view::npos) return "";
  return xml_unescape(doc.substr(start, end - start));
}

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    std::size_t semi = s.find(';', i);
    if (semi == std::string_view::npos) {
      out += s[i];
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (ent == "amp")
      out += '&';
    else if (ent == "lt")
      out += '<';
    else if (ent == "gt")
      out += '>';
    else if (ent == "quot")
      out += '"';
    else if (ent == "apos")
      out += '\'';
    else if (!ent.empty() && ent[0] == '#') {
      std::string num(ent.substr(1));
      unsigned long cp = num.size() > 1 && (num[0] == 'x' || num[0] == 'X')
                             ? std::strtoul(num.c_str() + 1, nullptr, 16)
                             : std::strtoul(num.c_str(), nullptr, 10);
      append_utf8(out, cp);
    } else {
      out.append(s.substr(i, semi - i + 1));
    }
    i = semi;
  }
  return out;
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace hylab::storage
