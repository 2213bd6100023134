// bcryptprimitives.dll for Wine 8.0 (Debian 12), which lacks it; every Windows 10 and later has it.
// Rust's std (and getrandom) take their random bytes from its `ProcessPrng`, so without it Wine
// cannot load the addon or the emulator. setup.sh builds this into the system32 of the project's
// Wine prefix (node loads addons with LOAD_WITH_ALTERED_SEARCH_PATH, which skips node.exe's own
// folder); only the Wine runs here use it, nothing ships it.
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
  while (length > 0) {
    ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
    if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) return FALSE;
    data += chunk;
    length -= chunk;
  }
  return TRUE;
}
