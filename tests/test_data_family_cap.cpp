// test_data_family_cap.cpp: the builder's family cap (--max-per-family): which
// sized variants it keeps, the sized_variant counts of the report, the package
// restriction, and that a family still lands on one side of the split. On prisms
// the test writes as OBJ files and lists in a --list file.
#include <cmath>
#include <map>
#include <set>

#include "data/dataset.h"
#include "tests/cli_fixtures.h"
#include "tests/test_util.h"
#include "tools/dataset_builder.h"
#include "tools/dataset_builder_cli.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// A closed prism over a regular n-gon: 4n - 4 faces, one piece, not flat.
Mesh prism(int n) {
  Mesh m;
  for (int ring = 0; ring < 2; ring++)
    for (int i = 0; i < n; i++) {
      const double a = 2 * M_PI * i / n;
      m.vertices.push_back({static_cast<float>(0.5 * std::cos(a)), ring ? 0.5f : -0.5f,
                            static_cast<float>(0.5 * std::sin(a))});
    }
  for (int i = 0; i < n; i++) {
    const int j = (i + 1) % n;
    m.faces.push_back({i, j, n + j});
    m.faces.push_back({i, n + j, n + i});
  }
  for (int i = 1; i + 1 < n; i++) {
    m.faces.push_back({0, i + 1, i});
    m.faces.push_back({n, n + i, n + i + 1});
  }
  return m;
}

ProgramRun build(const std::vector<std::string>& args) {
  return run_program_main([](int argc, char** argv) { return build_dataset_main(argc, argv, nullptr); },
                          "build_dataset", args);
}

// name -> split of every mesh in a built dataset.
std::map<std::string, std::string> splits_of(const std::string& npy) {
  MeshDataset ds(npy);
  std::map<std::string, std::string> out;
  for (int64_t i = 0; i < ds.size(); i++) out[ds.name(i)] = ds.split(i);
  return out;
}

}  // namespace

TEST_CASE("data: the family cap keeps members spread over the face counts, ties by name") {
  // Family (p, f) of 5 with faces 50, 10, 30, 40, 20; ties in family (p, g) by name.
  std::vector<FamilyMember> m = {{"p", "f", "a", 50}, {"p", "f", "b", 10}, {"p", "f", "c", 30},
                                 {"p", "f", "d", 40}, {"p", "f", "e", 20}, {"p", "g", "z", 7},
                                 {"p", "g", "y", 7},  {"p", "g", "x", 7},  {"q", "f", "a", 1}};
  auto kept = [&](int cap, std::vector<std::string> packages) {
    std::vector<bool> keep = family_cap_keep(m, cap, packages);
    REQUIRE(keep.size() == m.size());
    std::string s;
    for (size_t i = 0; i < m.size(); i++)
      if (keep[i]) s += m[i].family + m[i].name + " ";
    return s;
  };
  CHECK(kept(0, {}) == "fa fb fc fd fe gz gy gx fa ");       // no cap
  CHECK(kept(2, {}) == "fa fb gz gx fa ");                  // smallest + largest; ties: x < y < z
  CHECK(kept(3, {}) == "fa fb fc gz gy gx fa ");            // 10, 30, 50; a family of 3 stays whole
  CHECK(kept(1, {}) == "fc gy fa ");                        // the median
  CHECK(kept(4, {}) == "fa fb fd fe gz gy gx fa ");         // positions 0, 1, 3 (1.33 and 2.67 rounded), 4: not c
  CHECK(kept(1, {"q"}) == "fa fb fc fd fe gz gy gx fa ");  // only package q is capped: its family has 1
  CHECK(kept(1, {"p"}) == "fc gy fa ");
  // The order of the members does not change which ones are kept.
  std::vector<FamilyMember> reversed(m.rbegin(), m.rend());
  std::vector<bool> a = family_cap_keep(m, 2, {}), b = family_cap_keep(reversed, 2, {});
  for (size_t i = 0; i < m.size(); i++) CHECK(a[i] == b[m.size() - 1 - i]);
}

TEST_CASE("build_dataset: --max-per-family drops sized variants, counts them per package, keeps families whole") {
  const std::string dir = fresh_dir("build/test_family_cap");
  // Package pa: family "parts/part" of five sizes (prisms of 6..14 sides: 20..52
  // faces), family "parts/knob" of two, and three one-member families; package
  // pb: the same family name "parts/part" with three sizes (a family of its own).
  struct Item {
    std::string name, package;
    int sides;
  };
  const std::vector<Item> items = {
      {"part_10", "pa", 10}, {"part_6", "pa", 6},   {"part_14", "pa", 14}, {"part_8", "pa", 8},
      {"part_12", "pa", 12}, {"knob_7", "pa", 7},   {"knob_9", "pa", 9},   {"lever", "pa", 11},
      {"gear", "pa", 13},    {"cog", "pa", 15},     {"part-16", "pb", 16}, {"part-18", "pb", 18},
      {"part-20", "pb", 20}};
  std::string list;
  for (const Item& it : items) {
    write_obj(dir + "/" + it.name + ".obj", prism(it.sides));
    list += dir + "/" + it.name + ".obj\t" + it.name + "\tparts\t" + it.package + "\tCC0\t/" + it.name + ".obj\n";
  }
  write_text(dir + "/list.tsv", list);
  const std::vector<std::string> common = {"--list", dir + "/list.tsv", "--quiet", "--no-simplify",
                                           "--val-fraction", "0.5"};
  auto run = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> args = {"-o", dir + "/" + out};
    args.insert(args.end(), common.begin(), common.end());
    args.insert(args.end(), extra.begin(), extra.end());
    ProgramRun r = build(args);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    return r;
  };

  ProgramRun all = run("all.npy", {});
  CHECK(contains(all.out, "inputs 13, kept 13 "));
  CHECK_FALSE(contains(all.out, "sized_variant"));

  ProgramRun capped = run("cap2.npy", {"--max-per-family", "2"});
  CHECK(contains(capped.out, "inputs 13, kept 9 "));
  CHECK(contains(capped.out, "\n  dropped, sized_variant: 4\n"));
  CHECK(contains(capped.out, "  pa: files 10, kept 7 "));
  CHECK(contains(capped.out, "  pb: files 3, kept 2 "));
  // Per package, under each package's line: pa lost 3 (part_8, _10, _12), pb 1 (part-18).
  const size_t pa = capped.out.find("  pa: files"), pb = capped.out.find("  pb: files");
  REQUIRE(pa != std::string::npos);
  REQUIRE(pb != std::string::npos);
  CHECK(capped.out.substr(pa, pb - pa).find("      dropped, sized_variant: 3\n") != std::string::npos);
  CHECK(capped.out.substr(pb).find("      dropped, sized_variant: 1\n") != std::string::npos);
  std::map<std::string, std::string> s = splits_of(dir + "/cap2.npy");
  std::set<std::string> names;
  for (const auto& kv : s) names.insert(kv.first);
  CHECK(names == std::set<std::string>{"part_6", "part_14", "knob_7", "knob_9", "lever", "gear", "cog", "part-16",
                                       "part-20"});
  // The sidecar's counts carry the drop too.
  CHECK(contains(read_text(dir + "/cap2.json"), "\"sized_variant\": 4"));

  // The cap on package pa only: pb keeps its three.
  ProgramRun only_pa = run("cap2pa.npy", {"--max-per-family", "2", "--family-cap-package", "pa"});
  CHECK(contains(only_pa.out, "inputs 13, kept 10 "));
  CHECK(contains(only_pa.out, "\n  dropped, sized_variant: 3\n"));
  CHECK(splits_of(dir + "/cap2pa.npy").count("part-18") == 1);

  // A family lands on one side of the split, capped or not, and the cap keeps
  // each kept mesh's split; both sides are used (val fraction 0.5, 5 families).
  std::map<std::string, std::string> uncapped = splits_of(dir + "/all.npy");
  std::map<std::string, std::set<std::string>> family_sides;
  std::set<std::string> sides;
  for (const auto& [name, split] : uncapped) {
    std::string family;
    for (char c : name)
      if (std::isalpha(static_cast<unsigned char>(c))) family += c;
    family_sides[family].insert(split);
    sides.insert(split);
    if (s.count(name)) CHECK(s[name] == split);
  }
  for (const auto& [family, side] : family_sides) CHECK_MESSAGE(side.size() == 1, family);
  CHECK(sides == std::set<std::string>{"train", "val"});
}

TEST_CASE("build_dataset: --family-cap-package needs --max-per-family and a package the inputs have") {
  const std::string dir = fresh_dir("build/test_family_cap_bad");
  write_obj(dir + "/p.obj", prism(8));
  write_text(dir + "/list.tsv", dir + "/p.obj\tp\tparts\tpa\tCC0\n");
  ProgramRun r = build({"-o", dir + "/o.npy", "--list", dir + "/list.tsv", "--quiet", "--family-cap-package", "pa"});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--family-cap-package needs --max-per-family"));
  r = build({"-o", dir + "/o.npy", "--list", dir + "/list.tsv", "--quiet", "--max-per-family", "1",
             "--family-cap-package", "kicad"});
  CHECK(r.status == 1);
  CHECK(contains(r.err, "--family-cap-package kicad: no input is of this package"));
  CHECK_FALSE(contains(r.err, ".cpp:"));
  r = build({"-o", dir + "/o.npy", "--list", dir + "/list.tsv", "--quiet", "--max-per-family", "0"});
  CHECK(r.status == 2);
}
