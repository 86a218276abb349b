// json.cpp — strict JSON reader and writer (see json.hpp).
#include "json.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend.hpp"

namespace qw {

const Json *Json::get(const std::string &key) const {
  if (kind != Object) return nullptr;
  for (const auto &kv : obj)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

namespace {

struct Parser {
  const char *s;
  size_t n, i = 0;
  const char *what;

  [[noreturn]] void fail(const std::string &msg) const {
    // Show a short excerpt of the input around the failure so the caller sees what was wrong.
    size_t a = i > 16 ? i - 16 : 0, b = i + 16 < n ? i + 16 : n;
    std::string near(s + a, b - a);
    for (char &c : near)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    throw Error(QW_ERR_INVALID_ARGUMENT,
                std::string(what) + ": invalid JSON at offset " + std::to_string(i) + ": " + msg + " (near \"" +
                    near + "\")");
  }
  void ws() {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool lit(const char *w) {
    size_t k = std::strlen(w);
    if (n - i >= k && std::memcmp(s + i, w, k) == 0) {
      i += k;
      return true;
    }
    return false;
  }
  static void put_utf8(std::string &o, uint32_t cp) {
    if (cp < 0x80) {
      o += char(cp);
    } else if (cp < 0x800) {
      o += char(0xC0 | (cp >> 6));
      o += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      o += char(0xE0 | (cp >> 12));
      o += char(0x80 | ((cp >> 6) & 0x3F));
      o += char(0x80 | (cp & 0x3F));
    } else {
      o += char(0xF0 | (cp >> 18));
      o += char(0x80 | ((cp >> 12) & 0x3F));
      o += char(0x80 | ((cp >> 6) & 0x3F));
      o += char(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (n - i < 4) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }
  std::string string() {
    if (i >= n || s[i] != '"') fail("expected a string");
    ++i;
    std::string o;
    for (;;) {
      if (i >= n) fail("unterminated string");
      char c = s[i++];
      if (c == '"') return o;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        o += c;
        continue;
      }
      if (i >= n) fail("unterminated escape");
      char e = s[i++];
      switch (e) {
        case '"': o += '"'; break;
        case '\\': o += '\\'; break;
        case '/': o += '/'; break;
        case 'b': o += '\b'; break;
        case 'f': o += '\f'; break;
        case 'n': o += '\n'; break;
        case 'r': o += '\r'; break;
        case 't': o += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (!lit("\\u")) fail("lone high surrogate");
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("lone low surrogate");
          }
          put_utf8(o, cp);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
  }
  double number() {
    size_t st = i;
    if (i < n && s[i] == '-') ++i;
    if (i >= n) fail("truncated number");
    if (s[i] == '0') {
      ++i;
    } else if (s[i] >= '1' && s[i] <= '9') {
      while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
    } else {
      fail("expected a digit");
    }
    if (i < n && s[i] == '.') {
      ++i;
      if (i >= n || s[i] < '0' || s[i] > '9') fail("expected a digit after '.'");
      while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
      if (i >= n || s[i] < '0' || s[i] > '9') fail("expected a digit in the exponent");
      while (i < n && s[i] >= '0' && s[i] <= '9') ++i;
    }
    std::string tok(s + st, i - st);
    double v = std::strtod(tok.c_str(), nullptr);  // locale: the engine never calls setlocale
    if (!std::isfinite(v)) fail("number out of range");
    return v;
  }
  Json value(int depth) {
    if (depth > 32) fail("nesting deeper than 32 levels");
    ws();
    if (i >= n) fail("unexpected end of input");
    Json v;
    char c = s[i];
    if (c == '{') {
      ++i;
      v.kind = Json::Object;
      ws();
      if (i < n && s[i] == '}') {
        ++i;
        return v;
      }
      for (;;) {
        ws();
        std::string k = string();
        for (const auto &kv : v.obj)
          if (kv.first == k) fail("duplicate key \"" + k + "\"");
        ws();
        if (i >= n || s[i] != ':') fail("expected ':'");
        ++i;
        Json item = value(depth + 1);
        v.obj.emplace_back(std::move(k), std::move(item));
        ws();
        if (i < n && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < n && s[i] == '}') {
          ++i;
          return v;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++i;
      v.kind = Json::Array;
      ws();
      if (i < n && s[i] == ']') {
        ++i;
        return v;
      }
      for (;;) {
        v.arr.push_back(value(depth + 1));
        ws();
        if (i < n && s[i] == ',') {
          ++i;
          continue;
        }
        if (i < n && s[i] == ']') {
          ++i;
          return v;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = Json::String;
      v.str = string();
      return v;
    }
    if (lit("true")) {
      v.kind = Json::Bool;
      v.b = true;
      return v;
    }
    if (lit("false")) {
      v.kind = Json::Bool;
      return v;
    }
    if (lit("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Json::Number;
      v.num = number();
      return v;
    }
    fail("unexpected character");
  }
};

}  // namespace

static Json empty_object() {
  Json j;
  j.kind = Json::Object;
  return j;
}

Json parse_json_object(const char *text, const char *what) {
  if (text == nullptr) return empty_object();
  Parser p{text, std::strlen(text), 0, what};
  p.ws();
  if (p.i == p.n) return empty_object();
  Json v = p.value(0);
  p.ws();
  if (p.i != p.n) p.fail("trailing characters after the JSON value");
  if (v.kind != Json::Object) throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": expected a JSON object");
  return v;
}

bool json_num(const Json &o, const char *key, const char *what, double *out) {
  const Json *v = o.get(key);
  if (!v || v->kind == Json::Null) return false;
  if (v->kind != Json::Number)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"" + key + "\" must be a number");
  *out = v->num;
  return true;
}

bool json_int(const Json &o, const char *key, int64_t lo, int64_t hi, const char *what, int64_t *out) {
  double d;
  if (!json_num(o, key, what, &d)) return false;
  if (d != std::floor(d) || d < double(lo) || d > double(hi))
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"" + key + "\" must be an integer in [" +
                                             std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                             std::to_string(d));
  *out = int64_t(d);
  return true;
}

bool json_bool(const Json &o, const char *key, const char *what, bool *out) {
  const Json *v = o.get(key);
  if (!v || v->kind == Json::Null) return false;
  if (v->kind != Json::Bool)
    throw Error(QW_ERR_INVALID_ARGUMENT, std::string(what) + ": \"" + key + "\" must be true or false");
  *out = v->b;
  return true;
}

void json_only_keys(const Json &o, const std::vector<std::string> &allowed, const char *what) {
  for (const auto &kv : o.obj) {
    bool ok = false;
    for (const auto &a : allowed) ok = ok || a == kv.first;
    if (!ok) {
      std::string list;
      for (const auto &a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw Error(QW_ERR_INVALID_ARGUMENT,
                  std::string(what) + ": unknown key \"" + kv.first + "\" (known: " + list + ")");
    }
  }
}

std::string json_escape(const std::string &s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += char(c);
        }
    }
  }
  return o + "\"";
}

void JsonWriter::comma() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
}
JsonWriter &JsonWriter::begin_object() {
  comma();
  out_ += '{';
  first_.push_back(true);
  return *this;
}
JsonWriter &JsonWriter::end_object() {
  out_ += '}';
  first_.pop_back();
  return *this;
}
JsonWriter &JsonWriter::begin_array() {
  comma();
  out_ += '[';
  first_.push_back(true);
  return *this;
}
JsonWriter &JsonWriter::end_array() {
  out_ += ']';
  first_.pop_back();
  return *this;
}
JsonWriter &JsonWriter::key(const std::string &k) {
  comma();
  out_ += json_escape(k);
  out_ += ':';
  after_key_ = true;
  return *this;
}
JsonWriter &JsonWriter::value(const std::string &s) {
  comma();
  out_ += json_escape(s);
  return *this;
}
JsonWriter &JsonWriter::value(const char *s) { return value(std::string(s ? s : "")); }
JsonWriter &JsonWriter::value(double d) {
  comma();
  if (!std::isfinite(d)) {
    out_ += "null";  // JSON has no inf/NaN
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    out_ += buf;
  }
  return *this;
}
JsonWriter &JsonWriter::value(int64_t v) {
  comma();
  out_ += std::to_string(v);
  return *this;
}
JsonWriter &JsonWriter::value(uint64_t v) {
  comma();
  out_ += std::to_string(v);
  return *this;
}
JsonWriter &JsonWriter::value(bool b) {
  comma();
  out_ += b ? "true" : "false";
  return *this;
}
JsonWriter &JsonWriter::null() {
  comma();
  out_ += "null";
  return *this;
}
JsonWriter &JsonWriter::raw(const std::string &json) {
  comma();
  out_ += json;
  return *this;
}

}  // namespace qw
