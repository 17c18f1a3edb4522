// Tests for core/recipe: YAML written here to a temp dir -> load_recipe -> structs, defaults,
// --set overrides, resolved JSON and hash, and one case per user error (each message must name
// the file and the key path).
#include "core/recipe.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <unistd.h>

#include "core/error.h"

namespace {

namespace fs = std::filesystem;
using calq::core::load_recipe;
using calq::core::Recipe;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

// A fresh directory under the system temp dir holding recipe.yaml, removed afterwards.
class RecipeDir {
 public:
  RecipeDir() {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("calq_recipe_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_ / "configs");
  }
  ~RecipeDir() { fs::remove_all(dir_); }
  RecipeDir(const RecipeDir&) = delete;
  RecipeDir& operator=(const RecipeDir&) = delete;

  std::string write(const std::string& yaml, const std::string& name = "configs/recipe.yaml") {
    const fs::path path = dir_ / name;
    std::ofstream(path) << yaml;
    return path.string();
  }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

constexpr const char* kMinimal = "model: {path: model.bin}\n";

constexpr const char* kFull = R"(# every section, with non-default values
model:
  path: ../data/stories260K.bin
  tokenizer: ../data/tok512.bin
  device: cuda
  dtype: bfloat16
calibration:
  data: ../data/calib.txt
  nsamples: 64
  seqlen: 256
  seed: 7
  offsets: null
scheme:
  weights: {bits: 3, group_size: 32, sym: true, format: int, grid: ct, scale_dtype: float32}
  activations: {bits: 8, granularity: tensor, dynamic: false, sym: false}
  targets: [attn.*, mlp.down]
  overrides:
    mlp.down: {bits: 8}
    "attn.*": {group_size: -1, sym: false}
passes:
  - smoothquant: {alpha: 0.5}
  - gptq: {act_order: true, damp: 0.01, block_size: 128}
  - rtn
eval:
  perplexity:
    - {data: ../data/valid.txt, seqlen: 256, join: wikitext-rows, max_windows: 4}
    - {data: /abs/eval.txt}
save: {format: gptq, path: out/model}
)";

std::string load_error(const std::string& path, const std::vector<std::string>& overrides = {}) {
  try {
    load_recipe(path, overrides);
  } catch (const calq::Error& e) {
    return e.what();
  }
  FAIL("load_recipe accepted " << path);
  return "";
}

}  // namespace

TEST_CASE("load_recipe reads every section and resolves paths against the recipe's directory",
          "[core][recipe]") {
  using namespace calq::core;
  RecipeDir dir;
  const std::string path = dir.write(kFull);
  const Recipe r = load_recipe(path);
  const fs::path data = fs::absolute(dir.dir() / "data");

  CHECK(r.file == path);
  CHECK(r.model.path.resolved == (data / "stories260K.bin").string());
  CHECK(r.model.path.as_written == "../data/stories260K.bin");
  REQUIRE(r.model.tokenizer);
  CHECK(r.model.tokenizer->resolved == (data / "tok512.bin").string());
  CHECK(r.model.device == Device::Cuda);
  CHECK(r.model.dtype == ComputeDtype::BFloat16);

  REQUIRE(r.calibration);
  CHECK(r.calibration->data.resolved == (data / "calib.txt").string());
  CHECK(r.calibration->n_samples == 64);
  CHECK(r.calibration->seqlen == 256);
  CHECK(r.calibration->seed == 7);
  CHECK_FALSE(r.calibration->offsets);

  const WeightScheme& w = r.scheme.weights;
  CHECK(w.bits == 3);
  CHECK(w.group_size == 32);
  CHECK(w.sym);
  CHECK(w.format == WeightFormat::Int);
  CHECK(w.grid == QuantGrid::Ct);
  CHECK(w.scale_dtype == ScaleDtype::Float32);
  REQUIRE(r.scheme.activations);
  CHECK(r.scheme.activations->granularity == ActGranularity::PerTensor);
  CHECK_FALSE(r.scheme.activations->dynamic);
  CHECK(r.scheme.targets == std::vector<std::string>{"attn.*", "mlp.down"});
  REQUIRE(r.scheme.overrides.size() == 2);
  CHECK(r.scheme.overrides[0].pattern == "mlp.down");  // file order kept
  CHECK(r.scheme.overrides[0].bits == 8);
  CHECK_FALSE(r.scheme.overrides[0].group_size);
  CHECK(r.scheme.overrides[1].group_size == -1);
  CHECK(r.scheme.overrides[1].sym == false);

  REQUIRE(r.passes.size() == 3);
  CHECK(r.passes[0].name == "smoothquant");
  CHECK(r.passes[1].name == "gptq");
  CHECK(r.passes[2].name == "rtn");
  CHECK(r.passes[1].options.key_path() == "passes.1.gptq");
  CHECK(r.passes[1].options.get_double("damp", 0.1) == Approx(0.01));
  CHECK(r.passes[1].options.get_bool("act_order", false));
  CHECK(r.passes[2].options.keys().empty());

  REQUIRE(r.eval.perplexity.size() == 2);
  CHECK(r.eval.perplexity[0].join == TextJoin::WikitextRows);
  CHECK(r.eval.perplexity[0].max_windows == 4);
  CHECK(r.eval.perplexity[1].data.resolved == "/abs/eval.txt");
  CHECK(r.eval.perplexity[1].seqlen == 2048);
  REQUIRE(r.save);
  CHECK(r.save->format == SaveFormat::Gptq);
  CHECK(r.save->path.resolved == fs::absolute(dir.dir() / "configs/out/model").string());
}

TEST_CASE("load_recipe fills every default of a minimal recipe", "[core][recipe]") {
  using namespace calq::core;
  RecipeDir dir;
  const Recipe r = load_recipe(dir.write(kMinimal));
  CHECK(r.model.device == Device::Cpu);
  CHECK(r.model.dtype == ComputeDtype::Float32);
  CHECK_FALSE(r.model.tokenizer);
  CHECK_FALSE(r.calibration);
  CHECK(r.scheme.weights.bits == 4);
  CHECK(r.scheme.weights.group_size == 128);
  CHECK_FALSE(r.scheme.weights.sym);
  CHECK(r.scheme.weights.grid == QuantGrid::Gptq);
  CHECK(r.scheme.weights.scale_dtype == ScaleDtype::Float16);
  CHECK_FALSE(r.scheme.activations);
  CHECK(r.scheme.targets == std::vector<std::string>{"attn.*", "mlp.*"});
  CHECK(r.passes.empty());
  CHECK(r.eval.perplexity.empty());
  CHECK_FALSE(r.save);

  const std::string json = r.resolved_json();
  CHECK_THAT(json, Contains(R"("weights":{"bits":4,"group_size":128,"sym":false,"format":"int",)"
                            R"("grid":"gptq","scale_dtype":"float16","scale":"exact"})"));
  CHECK_THAT(json, Contains(R"("calibration":null)"));
  CHECK_THAT(json, Contains(R"("passes":[])"));
  CHECK_THAT(json, Contains(R"("save":null)"));

  const auto calib = load_recipe(dir.write("model: {path: m}\ncalibration: {data: c.txt}\n"));
  REQUIRE(calib.calibration);
  CHECK(calib.calibration->n_samples == 128);
  CHECK(calib.calibration->seqlen == 2048);
  CHECK(calib.calibration->seed == 0);
  CHECK(calib.calibration->max_memory_gb == 32.0);
}

TEST_CASE("calibration.max_memory_gb is read, overridable and range-checked", "[core][recipe]") {
  using namespace calq::core;
  RecipeDir dir;
  const std::string path =
      dir.write("model: {path: m}\ncalibration: {data: c.txt, max_memory_gb: 2.5}\n");
  CHECK(load_recipe(path).calibration->max_memory_gb == 2.5);
  CHECK(load_recipe(path, {"calibration.max_memory_gb=64"}).calibration->max_memory_gb == 64.0);
  CHECK_THAT(load_error(path, {"calibration.max_memory_gb=0"}),
             Contains("calibration.max_memory_gb") && Contains("out of range"));
}

TEST_CASE("fp and nf weight formats imply their width", "[core][recipe]") {
  using namespace calq::core;
  RecipeDir dir;
  CHECK(load_recipe(dir.write("model: {path: m}\nscheme: {weights: {format: nf4}}\n"))
            .scheme.weights.bits == 4);
  CHECK(load_recipe(dir.write("model: {path: m}\nscheme: {weights: {format: fp8_e4m3, bits: 8}}\n"))
            .scheme.weights.bits == 8);
  CHECK_THAT(load_error(dir.write("model: {path: m}\nscheme: {weights: {format: fp8_e5m2, "
                                  "bits: 4}}\n")),
             Contains("recipe.yaml: scheme.weights.bits: 4 does not match format fp8_e5m2; "
                      "expected 8"));
}

TEST_CASE("resolved_json shows pass options as given, whatever reads them, and hashes stably",
          "[core][recipe]") {
  RecipeDir dir;
  const std::string path = dir.write(kFull);
  const Recipe a = load_recipe(path);
  const Recipe b = load_recipe(path);
  CHECK(a.resolved_json() == b.resolved_json());
  CHECK(a.hash() == b.hash());
  CHECK(a.hash_hex().size() == 16);

  // Pass defaults come from algorithms::resolve_recipe (tests/algorithms/resolved_recipe_test.cpp);
  // a getter's default is not part of the recipe's value.
  a.passes[1].options.get_bool("static_groups", false);
  CHECK(a.resolved_json() == b.resolved_json());
  CHECK_THAT(a.resolved_json(), Contains(R"({"gptq":{"act_order":true,"damp":0.01,)"
                                         R"("block_size":128}})"));
  CHECK_THAT(a.resolved_json(), Contains(R"({"rtn":{}})"));

  // Key order in the file does not change the hash; a value does.
  const Recipe reordered = load_recipe(dir.write("model: {dtype: float32, path: model.bin}\n"));
  const Recipe minimal = load_recipe(dir.write(kMinimal));
  CHECK(reordered.hash() == minimal.hash());
  CHECK(load_recipe(dir.write(kMinimal), {"scheme.weights.bits=3"}).hash() != minimal.hash());
}

TEST_CASE("set overrides apply to scalars, nested keys, list entries, nulls and flow lists",
          "[core][recipe]") {
  RecipeDir dir;
  const std::string path = dir.write(kFull);
  SECTION("a nested scalar") {
    const Recipe r = load_recipe(path, {"scheme.weights.bits=4", "scheme.weights.sym=false"});
    CHECK(r.scheme.weights.bits == 4);
    CHECK_FALSE(r.scheme.weights.sym);
  }
  SECTION("a pass option by list index") {
    const Recipe r = load_recipe(path, {"passes.0.smoothquant.alpha=0.8"});
    CHECK(r.passes[0].options.get_double("alpha", 0.5) == Approx(0.8));
  }
  SECTION("a bare pass name gains options") {
    const Recipe r = load_recipe(path, {"passes.2.rtn.foo=1"});
    CHECK(r.passes[2].options.get_int("foo", 0) == 1);
  }
  SECTION("null removes an optional section") {
    const Recipe r = load_recipe(path, {"scheme.activations=null", "calibration.offsets=o.txt"});
    CHECK_FALSE(r.scheme.activations);
    REQUIRE(r.calibration->offsets);
    CHECK(r.calibration->offsets->resolved == (fs::current_path() / "o.txt").string());
  }
  SECTION("a flow list and a missing key created on the way") {
    const Recipe r = load_recipe(dir.write(kMinimal),
                                 {"scheme.targets=[attn.*]", "save.format=fake", "save.path=out"});
    CHECK(r.scheme.targets == std::vector<std::string>{"attn.*"});
    REQUIRE(r.save);
    CHECK(r.save->format == calq::core::SaveFormat::Fake);
    CHECK(r.save->path.resolved == (fs::current_path() / "out").string());  // --set: cwd
  }
  SECTION("a quoted value stays a string") {
    CHECK_THAT(load_error(path, {"scheme.weights.bits='3'"}),
               Contains("scheme.weights.bits (from --set): expected an integer, got \"3\""));
  }
}

TEST_CASE("load_recipe rejects unknown keys with a did-you-mean naming the key path",
          "[core][recipe]") {
  RecipeDir dir;
  CHECK_THAT(load_error(dir.write("modle: {path: m}\n")),
             Contains("recipe.yaml: modle: unknown key; did you mean \"model\"?"));
  CHECK_THAT(load_error(dir.write("model: {path: m}\nscheme: {weights: {bitz: 3}}\n")),
             Contains("recipe.yaml: scheme.weights.bitz: unknown key; did you mean \"bits\"?"));
  // A typo'd required key is reported as a typo, not as a missing key.
  CHECK_THAT(load_error(dir.write("model: {pth: m}\n")),
             Contains("recipe.yaml: model.pth: unknown key; did you mean \"path\"?"));
  CHECK_THAT(
      load_error(dir.write("model: {path: m}\neval: {perplexity: [{data: d, seqln: 3}]}\n")),
      Contains("recipe.yaml: eval.perplexity.0.seqln: unknown key; did you mean \"seqlen\"?"));

  // A pass's options are checked by the pass itself through Options::finish.
  const Recipe r =
      load_recipe(dir.write("model: {path: m}\npasses:\n  - gptq: {blok_size: 64, damp: 0.1}\n"));
  const calq::core::Options& o = r.passes[0].options;
  o.get_int("block_size", 128);
  o.get_double("damp", 0.01);
  CHECK_THROWS_WITH(o.finish(), Contains("recipe.yaml: passes.0.gptq.blok_size: unknown key; did "
                                         "you mean \"block_size\"?"));
}

TEST_CASE("load_recipe rejects impossible values and wrong types in one line naming the key",
          "[core][recipe]") {
  RecipeDir dir;
  auto with_weights = [&](const std::string& weights) {
    return dir.write("model: {path: m}\nscheme:\n  weights: " + weights + "\n");
  };
  CHECK_THAT(load_error(with_weights("{bits: 5}")),
             Contains("recipe.yaml: scheme.weights.bits: 5 is not supported; expected one of 2, "
                      "3, 4, 8"));
  CHECK_THAT(load_error(with_weights("{group_size: 0}")),
             Contains("recipe.yaml: scheme.weights.group_size: 0 is not a valid group size; "
                      "expected a positive integer or -1 (per channel)"));
  CHECK_THAT(load_error(with_weights("{group_size: -2}")),
             Contains("recipe.yaml: scheme.weights.group_size: -2 is not a valid group size"));
  CHECK_THAT(load_error(with_weights("{sym: yes}")),
             Contains("recipe.yaml: scheme.weights.sym: expected true or false, got \"yes\""));
  CHECK_THAT(load_error(with_weights("{grid: gtpq}")),
             Contains("recipe.yaml: scheme.weights.grid: \"gtpq\" is not supported; expected one "
                      "of gptq, ct, awq, absmax"));
  CHECK_THAT(load_error(dir.write("model: {path: m}\ncalibration: {data: c, nsamples: many}\n")),
             Contains("recipe.yaml: calibration.nsamples: expected an integer, got \"many\""));
  CHECK_THAT(load_error(dir.write("model: {path: m}\ncalibration: {data: c, seqlen: 1}\n")),
             Contains("recipe.yaml: calibration.seqlen: 1 is out of range; expected an integer "
                      ">= 2"));
  CHECK_THAT(load_error(dir.write("model: {path: m}\ncalibration: {nsamples: 4}\n")),
             Contains("recipe.yaml: calibration.data: missing; expected a path"));
  CHECK_THAT(load_error(dir.write("model: {device: cpu}\n")),
             Contains("recipe.yaml: model.path: missing; expected a path"));
  CHECK_THAT(load_error(dir.write("scheme: {}\n")), Contains("recipe.yaml: model: missing"));
  CHECK_THAT(load_error(dir.write("model: {path: m}\nscheme: {targets: []}\n")),
             Contains("recipe.yaml: scheme.targets: empty list"));
  CHECK_THAT(
      load_error(dir.write("model: {path: m}\nscheme: {overrides: {mlp.down: {bits: 6}}}\n")),
      Contains("recipe.yaml: scheme.overrides.mlp.down.bits: 6 is not supported"));
  CHECK_THAT(load_error(dir.write("model: {path: m}\nsave: {path: out}\n")),
             Contains("recipe.yaml: save.format: missing; expected one of fake, gptq, awq, "
                      "compressed-tensors"));
  CHECK_THAT(load_error(dir.write("model: {path: m}\nscheme: 4\n")),
             Contains("recipe.yaml: scheme: expected a mapping, got 4"));
}

TEST_CASE("load_recipe checks the shape of the passes list", "[core][recipe]") {
  RecipeDir dir;
  auto with_passes = [&](const std::string& passes) {
    return dir.write("model: {path: m}\npasses:" + passes + "\n");
  };
  CHECK_THAT(load_error(with_passes("\n  - rtn\n  - 3")),
             Contains("recipe.yaml: passes.1: expected a pass name or a single-key mapping "
                      "{name: {options}}, got 3"));
  CHECK_THAT(load_error(with_passes("\n  - gptq:\n    damp: 0.1")),
             Contains("recipe.yaml: passes.0: one entry holds gptq, damp; expected one pass per "
                      "list entry"));
  CHECK_THAT(load_error(with_passes("\n  - gptq: 0.1")),
             Contains("recipe.yaml: passes.0.gptq: expected a mapping of options, got 0.1"));
  CHECK_THAT(load_error(with_passes(" {gptq: {}}")),
             Contains("recipe.yaml: passes: expected a list of passes, got a mapping"));
  const Recipe r = load_recipe(with_passes("\n  - gptq:\n  - awq: {}"));
  REQUIRE(r.passes.size() == 2);
  CHECK(r.passes[0].options.keys().empty());
}

TEST_CASE("load_recipe rejects bad --set strings naming the override", "[core][recipe]") {
  RecipeDir dir;
  const std::string path = dir.write(kFull);
  CHECK_THAT(load_error(path, {"scheme.weights.bits"}),
             Contains("recipe.yaml: --set \"scheme.weights.bits\": no '='; expected "
                      "key.path=value"));
  CHECK_THAT(load_error(path, {"=3"}),
             Contains("--set \"=3\": empty key before '='; expected key.path=value"));
  CHECK_THAT(load_error(path, {"scheme..bits=3"}),
             Contains("--set \"scheme..bits=3\": empty part in the key path"));
  CHECK_THAT(load_error(path, {"scheme.targets=[attn.*"}),
             Contains("recipe.yaml: --set \"scheme.targets=[attn.*\" value: line 1, column 1: "
                      "end of sequence flow not found; expected valid YAML"));
  CHECK_THAT(load_error(path, {"passes.7.gptq.damp=0.1"}),
             Contains("--set \"passes.7.gptq.damp=0.1\": passes.7: index out of range; expected "
                      "0 to 2 (3 entries)"));
  CHECK_THAT(load_error(path, {"passes.gptq.damp=0.1"}),
             Contains("passes is a list; expected a numeric index, got \"gptq\""));
  CHECK_THAT(load_error(path, {"model.path.x=1"}),
             Contains("model.path is \"../data/stories260K.bin\"; expected a mapping or a list"));
  // Values set by --set are validated like the file's, and the error says where they came from.
  CHECK_THAT(load_error(path, {"scheme.weights.bits=5"}),
             Contains("recipe.yaml: scheme.weights.bits (from --set): 5 is not supported"));
  CHECK_THAT(load_error(path, {"scheme.weights.blok=5"}),
             Contains("scheme.weights.blok (from --set): unknown key"));
}

TEST_CASE("load_recipe reports unreadable, empty, malformed and duplicate-key files",
          "[core][recipe]") {
  RecipeDir dir;
  const std::string missing = (dir.dir() / "configs/none.yaml").string();
  CHECK_THAT(load_error(missing), Contains("none.yaml: missing; expected a YAML recipe"));
  CHECK_THAT(load_error(dir.write("")), Contains("recipe.yaml: the recipe is empty"));
  CHECK_THAT(load_error(dir.write("- a\n- b\n")),
             Contains("recipe.yaml: the recipe is a list; expected a mapping of sections"));
  CHECK_THAT(load_error(dir.write("model:\n  path: [a\n")), Contains("recipe.yaml: line "));
  CHECK_THAT(load_error(dir.write("model: {path: m}\nmodel: {path: n}\n")),
             Contains("recipe.yaml: model: duplicate key; expected each key once"));
  CHECK_THAT(load_error(dir.write("model: {path: m, dtype: 'float32', device: \"gpu\"}\n")),
             Contains("recipe.yaml: model.device: \"gpu\" is not supported; expected one of cpu, "
                      "cuda"));
}
