// tile.cpp — the registry entry of toggle "tile": its values (in Tile enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "tile.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(tile) {
  return OptDef<Tile>("tile", "Kernel tile sizes")
      .value(Tile::Auto, "auto")
      .value(Tile::Fixed, "fixed")
      .by_default(Tile::Auto)
      .cpu({Tile::Auto})
      .cuda({Tile::Auto})
      .spec("QWEN-010")
      .describe(
          "Kernel tile sizes: measured per device (auto) or fixed.");
}

}  // namespace qw
