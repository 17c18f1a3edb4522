# Precompiled <ATen/ATen.h>: parsing LibTorch's headers is about three quarters of the compile time
# of every translation unit that sees a tensor (8 s of CPU per file on the 2-core machine), so one
# precompiled copy shared by all of calq's targets saves most of that on a fresh build.
#
# Only sources that reach a tensor header, and have no compile options of their own, get it. For
# the tokenizers, the YAML/JSON plumbing and the CLI glue, loading the 270 MB precompiled header
# would cost more than it saves. Whether a source reaches one is decided by following its
# "core/…", "calib/…", "algorithms/…", "run/…", "cli/…" and "tests/…" includes through the
# source tree.

option(CALQ_PCH "Precompile <ATen/ATen.h> for the sources that include tensor headers" ON)

set(_calq_pch_tensor_regex "#include <(ATen/ATen\\.h|ATen/core/Tensor\\.h|torch/)")
set(_calq_pch_project_regex "#include \"((core|calib|algorithms|run|cli|tests)/[^\"]+)\"")

# Sets ${out} to TRUE when `file` or a project header it includes (transitively) includes a tensor
# header. Results are memoised per header in global properties.
function(_calq_reaches_tensor file out)
  get_property(known GLOBAL PROPERTY "calq_pch_${file}" SET)
  if(known)
    get_property(result GLOBAL PROPERTY "calq_pch_${file}")
    set(${out} ${result} PARENT_SCOPE)
    return()
  endif()
  set_property(GLOBAL PROPERTY "calq_pch_${file}" FALSE)  # breaks include cycles
  set(result FALSE)
  if(EXISTS "${file}")
    file(STRINGS "${file}" lines REGEX "^#include ")
    foreach(line IN LISTS lines)
      if(line MATCHES "${_calq_pch_tensor_regex}")
        set(result TRUE)
        break()
      endif()
      if(line MATCHES "${_calq_pch_project_regex}")
        _calq_reaches_tensor("${PROJECT_SOURCE_DIR}/${CMAKE_MATCH_1}" nested)
        if(nested)
          set(result TRUE)
          break()
        endif()
      endif()
    endforeach()
  endif()
  set_property(GLOBAL PROPERTY "calq_pch_${file}" ${result})
  set(${out} ${result} PARENT_SCOPE)
endfunction()

# Gives the named targets' tensor-reaching sources the precompiled header. It is built once, by
# an object library that carries only the flags every calq target shares (LibTorch, Eigen, fmt):
# GCC refuses a precompiled header built with a macro the using file lacks, so it must not be
# built with one target's private definitions (spdlog's, say).
function(calq_precompile_aten)
  if(NOT CALQ_PCH)
    return()
  endif()
  set(anchor "${PROJECT_BINARY_DIR}/calq_pch_anchor.cpp")
  file(CONFIGURE OUTPUT "${anchor}" CONTENT "// Builds the shared precompiled <ATen/ATen.h>.\n")
  add_library(calq_pch OBJECT "${anchor}")
  target_link_libraries(calq_pch PRIVATE calq_torch calq_fmt Eigen3::Eigen calq_warnings)
  target_precompile_headers(calq_pch PRIVATE <ATen/ATen.h>)
  foreach(target IN LISTS ARGV)
    target_precompile_headers(${target} REUSE_FROM calq_pch)
    get_target_property(sources ${target} SOURCES)
    get_target_property(source_dir ${target} SOURCE_DIR)
    foreach(source IN LISTS sources)
      get_filename_component(path "${source}" ABSOLUTE BASE_DIR "${source_dir}")
      _calq_reaches_tensor("${path}" reaches)
      # GCC does not check that a precompiled header's -f options match the using file's: the
      # GPTQ kernel (-ffp-contract=off -fno-trapping-math) gave other codes through the shared
      # header (sotu W4 g128: ppl 28.3404 -> 28.3541). Sources with options of their own parse
      # ATen themselves.
      get_source_file_property(own_options "${path}" TARGET_DIRECTORY ${target} COMPILE_OPTIONS)
      if(NOT reaches OR own_options)
        set_source_files_properties("${path}" TARGET_DIRECTORY ${target}
                                    PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
      endif()
    endforeach()
  endforeach()
endfunction()
