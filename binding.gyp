{
  # The Node addon. Sources come from native/sources.cjs (the naming convention CMakeLists.txt globs).
  # Each ISA group is a static library with its own flags; never -march=native.
  "target_defaults": {
    "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra", "-fexceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++1y", "-std=gnu++20"],
    "include_dirs": ["native"],
    # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a native call under way when its thread's JS stops (worker.terminate(),
    # process.exit() while a model loads or runs) sees its later Node-API calls fail; the C++ error that follows
    # cannot be thrown into a JS that has stopped, and without this node-addon-api rethrows it as a C++ exception
    # out of the callback, which aborts the whole process (test/teardown.test.ts).
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "xcode_settings": {"GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3", "-ffp-contract=off"]}
  },
  "targets": [
    {
      "target_name": "bitllm",
      "sources": ["<!@(node native/sources.cjs base)", "<!@(node native/sources.cjs addon)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "conditions": [
        ["target_arch=='x64'", {"dependencies": ["bitllm_avx2", "bitllm_avx512"]}],
        ["target_arch=='arm64'", {"dependencies": ["bitllm_neon", "bitllm_neondot"]}]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "bitllm_avx2",
          "type": "static_library",
          "sources": ["<!@(node native/sources.cjs avx2)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mpopcnt"]
        },
        {
          "target_name": "bitllm_avx512",
          "type": "static_library",
          "sources": ["<!@(node native/sources.cjs avx512)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2", "-mpopcnt",
                        "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"]
        }
      ]
    }],
    ["target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "bitllm_neon",
          "type": "static_library",
          "sources": ["<!@(node native/sources.cjs neon)"],
          "cflags_cc": ["-march=armv8-a"]
        },
        {
          "target_name": "bitllm_neondot",
          "type": "static_library",
          "sources": ["<!@(node native/sources.cjs neondot)"],
          "cflags_cc": ["-march=armv8.2-a+dotprod"]
        }
      ]
    }]
  ]
}
