// shake-keeper: the program a stack's keeper runs (shim/keeper.cc). libshake starts it with
// itself preloaded, so that the keeper maps the stack's arena with libshake's code at the same
// address as every program on the stack; the work is libshake's shake_keeper_main.
#include <dlfcn.h>

#include <cstdio>

int main(int argc, char** argv) {
  using Main = int (*)(int, char**);
  auto fn = reinterpret_cast<Main>(dlsym(RTLD_DEFAULT, "shake_keeper_main"));
  if (fn == nullptr) {
    std::fprintf(stderr,
                 "shake-keeper: libshake.so is not loaded; libshake starts this program itself "
                 "when a program first uses a stack\n");
    return 2;
  }
  return fn(argc, argv);
}
