/* evil.so: the library an attacker drops and preloads. Its constructor proves it ran. */
#include <unistd.h>

__attribute__((constructor)) static void evil(void) {
    static const char msg[] = "PRELOAD-RAN\n";
    (void)!write(1, msg, sizeof msg - 1);
}
