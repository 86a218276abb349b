// tile_json.hpp — the JSON both tuners answer qw_session_tile_tune with (engine/tuning.ts TuneAnswerSchema), where
// the two write it the same way. Defined in tile.cpp.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace qw {

class JsonWriter;

// One candidate of a measured shape (TunedCandidateSchema): name, config (written by `config` as a JSON value),
// samplesNs, maxAbsDiff, bitwiseEqual, withinBound (every output within the bound of a reordered fp32 sum of fixed's).
void write_tuned_candidate(JsonWriter &w, const std::string &name, const std::function<void(JsonWriter &)> &config,
                           const std::vector<double> &samples_ns, double max_abs, bool bitwise, bool within);

}  // namespace qw
