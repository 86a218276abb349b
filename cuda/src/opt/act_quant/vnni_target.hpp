// vnni_target.hpp — included last by the files that use AVX-512 VNNI (vpdpbusd). The build compiles the CPU backend
// with -mavx512f/bw/vl only, so VNNI is enabled per file here, and callers reach these files only after
// cpu_has_vnni(). GCC 12 warns about the intentionally undefined pass-through operand inside some AVX-512
// intrinsics; the warnings are silenced for the including file only.
#pragma once
#pragma GCC target("avx512vnni")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
