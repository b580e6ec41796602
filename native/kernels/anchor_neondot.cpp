// Keeps the armv8.2-a+dotprod source group non-empty (a static library needs one object); the NEON
// kernels' dotprod paths live in *_neondot.cpp files beside it.
namespace bitllm {
int neondot_anchor = 0;
}  // namespace bitllm
