/* tinydeploy's instruction counter, a QEMU TCG plugin.
 *
 * Counts every guest instruction the emulator executes (an inline add per instruction: exact and
 * the same on every run), and the instructions of the marked regions: from each execution of
 * the instruction at begin=ADDR to the next execution of the one at end=ADDR. The harness puts
 * noinline marker functions around each model invocation and verify passes their addresses.
 *
 *   qemu-... -plugin insncount.so,begin=0x...,end=0x...,out=FILE ...
 *
 * FILE receives three lines: "total N", "region N", "regions N". */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_plugin_api.h"

TDK_PLUGIN_EXPORT int qemu_plugin_version = 1;

static uint64_t executed;               /* every instruction */
static uint64_t region, regions;        /* inside the marked regions, and how many there were */
static uint64_t region_start;           /* 'executed' when the current region began */
static int in_region;
static uint64_t begin_pc = UINT64_MAX, end_pc = UINT64_MAX;
static char out_path[4096];

static void at_begin(unsigned int vcpu, void *userdata) {
  (void)vcpu;
  (void)userdata;
  region_start = executed;
  in_region = 1;
}

static void at_end(unsigned int vcpu, void *userdata) {
  (void)vcpu;
  (void)userdata;
  if (!in_region) return;
  region += executed - region_start;
  regions += 1;
  in_region = 0;
}

/* Called once per translated block: instrument each of its instructions. */
static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  size_t i, n = qemu_plugin_tb_n_insns(tb);
  (void)id;
  for (i = 0; i < n; ++i) {
    struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
    const uint64_t pc = qemu_plugin_insn_vaddr(insn);
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
    if (pc == begin_pc) qemu_plugin_register_vcpu_insn_exec_cb(insn, at_begin, QEMU_PLUGIN_CB_NO_REGS, NULL);
    if (pc == end_pc) qemu_plugin_register_vcpu_insn_exec_cb(insn, at_end, QEMU_PLUGIN_CB_NO_REGS, NULL);
  }
}

static void report(qemu_plugin_id_t id, void *userdata) {
  FILE *f = out_path[0] ? fopen(out_path, "w") : stderr;
  (void)id;
  (void)userdata;
  if (f == NULL) return;
  fprintf(f, "total %" PRIu64 "\nregion %" PRIu64 "\nregions %" PRIu64 "\n", executed, region, regions);
  if (f != stderr) fclose(f);
}

static int parse_address(const char *text, uint64_t *value) {
  char *rest;
  *value = strtoull(text, &rest, 0);
  return *text != '\0' && *rest == '\0';
}

TDK_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  int i;
  (void)info;
  for (i = 0; i < argc; ++i) {
    const char *arg = argv[i];
    int ok;
    if (strncmp(arg, "begin=", 6) == 0) {
      ok = parse_address(arg + 6, &begin_pc);
    } else if (strncmp(arg, "end=", 4) == 0) {
      ok = parse_address(arg + 4, &end_pc);
    } else if (strncmp(arg, "out=", 4) == 0) {
      ok = strlen(arg + 4) < sizeof out_path;
      if (ok) strcpy(out_path, arg + 4);
    } else {
      ok = 0;
    }
    if (!ok) {
      fprintf(stderr, "insncount: bad argument '%s' (takes begin=ADDR end=ADDR out=FILE)\n", arg);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, report, NULL);
  return 0;
}
