// Tests for core/did_you_mean: the edit distance and the closeness threshold behind every
// "did you mean" in recipe errors.
#include "core/did_you_mean.h"

#include <catch2/catch.hpp>

using calq::core::closest_match;
using calq::core::edit_distance;

TEST_CASE("edit_distance and closest_match find likely typos only",
          "[core][recipe][did_you_mean]") {
  CHECK(edit_distance("", "abc") == 3);
  CHECK(edit_distance("blok_size", "block_size") == 1);
  CHECK(edit_distance("bist", "bits") == 1);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(closest_match("modle", {"model", "scheme", "save"}) == "model");
  CHECK(closest_match("grup_size", {"bits", "group_size", "sym"}) == "group_size");
  CHECK(closest_match("xyz", {"bits", "sym"}).empty());
}
