// kernel_choices.cpp: the kernel choices of kernel_choices.h, held in one
// place and read from the environment only when a program asks.
#include "ops/kernel_choices.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace iflame::ops {

namespace {
// Each choice is an atomic flag: the launchers read them on every call, maybe
// from the data loader's or the tests' threads.
std::atomic<bool> flash_attention{true}, linear_attention_mma{true}, lt_bias{true}, pdl{true};

bool on_unless_zero(const char* name) {
  const char* v = std::getenv(name);
  return !(v && std::strcmp(v, "0") == 0);
}
const char* on_off(bool on) { return on ? "on" : "off"; }
}  // namespace

KernelChoices kernel_choices() {
  KernelChoices c;
  c.flash_attention = flash_attention.load();
  c.linear_attention_mma = linear_attention_mma.load();
  c.lt_bias = lt_bias.load();
  c.pdl = pdl.load();
  return c;
}

KernelChoices set_kernel_choices(const KernelChoices& choices) {
  const KernelChoices before = kernel_choices();
  flash_attention = choices.flash_attention;
  linear_attention_mma = choices.linear_attention_mma;
  lt_bias = choices.lt_bias;
  pdl = choices.pdl;
  return before;
}

void read_kernel_choices_from_environment() {
  KernelChoices c;
  c.flash_attention = on_unless_zero("IFLAME_FLASH_ATTENTION");
  c.linear_attention_mma = on_unless_zero("IFLAME_LINEAR_ATTENTION_MMA");
  c.lt_bias = on_unless_zero("IFLAME_LT_BIAS");
  c.pdl = on_unless_zero("IFLAME_PDL");
  set_kernel_choices(c);
}

std::string describe_kernel_choices() {
  const KernelChoices c = kernel_choices();
  return std::string("flash_attention=") + on_off(c.flash_attention) +
         " linear_attention_mma=" + on_off(c.linear_attention_mma) + " lt_bias=" + on_off(c.lt_bias) +
         " pdl=" + on_off(c.pdl);
}

}  // namespace iflame::ops
