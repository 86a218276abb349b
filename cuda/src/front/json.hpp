// json.hpp — a small strict JSON reader (for option and config objects) and a writer helper.
// The reader accepts RFC 8259 JSON (objects, arrays, strings, numbers, true/false/null); anything else is
// rejected with a message that says where and what. Nesting is limited to 32 levels.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qw {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::vector<std::pair<std::string, Json>> obj;  // in document order; duplicate keys are rejected

  const Json *get(const std::string &key) const;  // nullptr if absent (or not an object)
};

// Parses `text` (NULL or empty/whitespace-only means "{}"). Throws qw::Error(QW_ERR_INVALID_ARGUMENT) with
// `what` (e.g. "engine options") in the message on malformed input or when the top level is not an object.
Json parse_json_object(const char *text, const char *what);

// Typed field readers for flat option objects. They throw QW_ERR_INVALID_ARGUMENT naming `what` and the key.
// get_int: a finite number with no fractional part inside [lo, hi].
bool json_int(const Json &o, const char *key, int64_t lo, int64_t hi, const char *what, int64_t *out);
bool json_num(const Json &o, const char *key, const char *what, double *out);  // finite numbers only
bool json_bool(const Json &o, const char *key, const char *what, bool *out);
// Throws when `o` has a key not in `allowed` (catches typos in option objects).
void json_only_keys(const Json &o, const std::vector<std::string> &allowed, const char *what);

// Writer: builds compact JSON text. Keys and strings are escaped.
class JsonWriter {
 public:
  JsonWriter &begin_object();
  JsonWriter &end_object();
  JsonWriter &begin_array();
  JsonWriter &end_array();
  JsonWriter &key(const std::string &k);
  JsonWriter &value(const std::string &s);
  JsonWriter &value(const char *s);
  JsonWriter &value(double d);
  JsonWriter &value(int64_t i);
  JsonWriter &value(int32_t i) { return value(int64_t(i)); }
  JsonWriter &value(uint64_t i);
  JsonWriter &value(bool b);
  JsonWriter &null();
  JsonWriter &raw(const std::string &json);  // an already-serialised value
  const std::string &str() const { return out_; }

 private:
  void comma();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

std::string json_escape(const std::string &s);  // with the surrounding quotes

}  // namespace qw
