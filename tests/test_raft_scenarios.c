/*
 * test_raft_scenarios.c — scripted raft scenarios with checked-in traces.
 *
 * Each tests/raft_scenarios/NAME.txt is a script run by the tiny
 * interpreter below over the simulator with a perfect network (no loss,
 * no delay, storage completing within the tick); its output (commands,
 * every message, role changes, status tables) must equal NAME.out byte for
 * byte. RAFT_SCENARIO_REWRITE=1 rewrites the .out files (review the diff).
 *
 * Commands (one per line, '#' starts a comment):
 *   cluster N [noprevote] [nocheckquorum]   start N voters (ids 1..N)
 *   campaign ID | tick [N] | stabilize
 *   propose ID [TEXT] | read ID | transfer FROM TO
 *   isolate ID | cut A B (one way) | heal
 *   crash ID | restart ID | add-node | compact ID
 *   conf ID add-voter|add-learner|promote|remove TARGET
 *   status
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/raft_sim.h"

static int cc_type(const char *w)
{
	static const char *const names[] = {"add-voter", "add-learner", "promote", "remove"};
	for (int i = 0; i < 4; i++)
		if (strcmp(w, names[i]) == 0)
			return i;
	return -1;
}

static void result(FILE *out, int rv)
{
	if (rv)
		fprintf(out, "  -> %s\n", cairn_errname(rv));
}

/* Runs one script; returns 0 or -1 (invariant violation / bad script). */
static int run_script(FILE *in, FILE *out)
{
	struct sim s;
	bool have = false;
	char line[256];
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), in)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0] == '#' || line[0] == 0) {
			fprintf(out, "%s\n", line);
			continue;
		}
		fprintf(out, "> %s\n", line);
		char cmd[32] = "", a[64] = "", b[64] = "", c[64] = "";
		int nw = sscanf(line, "%31s %63s %63s %63s", cmd, a, b, c);
		unsigned long x = strtoul(a, NULL, 10), y = strtoul(b, NULL, 10);
		if (strcmp(cmd, "cluster") == 0) {
			struct sim_opts o = {.n = (unsigned)x,
			                     .seed = 1,
			                     .pre_vote = true,
			                     .check_quorum = true,
			                     .trace = out};
			for (int k = 1; k < nw; k++) {
				const char *w = k == 1 ? b : c;
				if (strcmp(w, "noprevote") == 0)
					o.pre_vote = false;
				if (strcmp(w, "nocheckquorum") == 0)
					o.check_quorum = false;
			}
			if (have)
				sim_fini(&s);
			rc = sim_init(&s, &o);
			have = true;
		} else if (!have) {
			fprintf(out, "no cluster\n");
			rc = -1;
		} else if (strcmp(cmd, "campaign") == 0) {
			struct raft_event ev = {.type = RAFT_EVENT_CAMPAIGN};
			result(out, sim_step(&s, x, &ev));
		} else if (strcmp(cmd, "tick") == 0) {
			for (unsigned long k = 0; k < (nw > 1 ? x : 1) && rc == 0; k++)
				rc = sim_tick(&s);
		} else if (strcmp(cmd, "stabilize") == 0) {
			rc = sim_stabilize(&s);
		} else if (strcmp(cmd, "propose") == 0) {
			result(out, sim_propose(&s, x, nw > 2 ? b : "x", nw > 2 ? strlen(b) : 1));
		} else if (strcmp(cmd, "read") == 0) {
			result(out, sim_read(&s, x));
		} else if (strcmp(cmd, "transfer") == 0) {
			struct raft_event ev = {.type = RAFT_EVENT_TRANSFER, .transfer.to = y};
			result(out, sim_step(&s, x, &ev));
		} else if (strcmp(cmd, "isolate") == 0) {
			for (unsigned i = 1; i <= SIM_MAX_NODES; i++) {
				sim_cut(&s, x, i, true);
				sim_cut(&s, i, x, true);
			}
		} else if (strcmp(cmd, "cut") == 0) {
			sim_cut(&s, x, y, true);
		} else if (strcmp(cmd, "heal") == 0) {
			sim_heal(&s);
		} else if (strcmp(cmd, "crash") == 0) {
			sim_crash(&s, x);
		} else if (strcmp(cmd, "restart") == 0) {
			rc = sim_restart(&s, x);
		} else if (strcmp(cmd, "add-node") == 0) {
			fprintf(out, "  -> member %llu\n", (unsigned long long)sim_add_node(&s));
		} else if (strcmp(cmd, "compact") == 0) {
			rc = sim_compact(&s, x);
		} else if (strcmp(cmd, "conf") == 0 && cc_type(b) >= 0) {
			result(out,
			       sim_conf_change(&s, x, (uint8_t)cc_type(b), strtoul(c, NULL, 10)));
		} else if (strcmp(cmd, "status") == 0) {
			sim_print_status(&s, out);
		} else {
			fprintf(out, "unknown command\n");
			rc = -1;
		}
		if (have && s.failed)
			rc = -1;
	}
	if (have) {
		if (s.failed)
			fprintf(out, "FAILED: %s\n", s.err);
		sim_fini(&s);
	}
	return rc;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b) {
		b[n] = 0;
		*len = (size_t)n;
	}
	return b;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
	const char *dir =
	    getenv("RAFT_SCENARIOS") ? getenv("RAFT_SCENARIOS") : "tests/raft_scenarios";
	bool rewrite = getenv("RAFT_SCENARIO_REWRITE") != NULL;
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "cannot open %s\n", dir);
		return 1;
	}
	char *names[64];
	int n = 0, failed = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < 64) {
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".txt") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_names);
	for (int i = 0; i < n; i++) {
		char in_path[512], out_path[512];
		snprintf(in_path, sizeof(in_path), "%s/%s", dir, names[i]);
		snprintf(out_path, sizeof(out_path), "%s/%.*s.out", dir,
		         (int)(strlen(names[i]) - 4), names[i]);
		FILE *in = fopen(in_path, "r");
		char *got = NULL;
		size_t got_len = 0;
		FILE *mem = open_memstream(&got, &got_len);
		int rc = in && mem ? run_script(in, mem) : -1;
		if (in)
			fclose(in);
		if (mem)
			fclose(mem);
		bool ok = rc == 0;
		if (ok && rewrite) {
			FILE *o = fopen(out_path, "w");
			ok = o && fwrite(got, 1, got_len, o) == got_len;
			if (o)
				fclose(o);
		} else if (ok) {
			size_t want_len = 0;
			char *want = slurp(out_path, &want_len);
			ok = want && want_len == got_len && memcmp(want, got, got_len) == 0;
			if (!ok) {
				/* Show the first differing line. */
				size_t k = 0, line = 1;
				while (want && k < want_len && k < got_len && want[k] == got[k])
					line += got[k++] == '\n';
				fprintf(stderr, "%s: trace differs from %s at line %zu\n", in_path,
				        out_path, line);
			}
			free(want);
		} else {
			fprintf(stderr, "%s: script failed\n%s", in_path, got ? got : "");
		}
		printf("scenario %s: %s\n", names[i], ok ? "ok" : "FAILED");
		failed += !ok;
		free(got);
		free(names[i]);
	}
	printf("%d scenarios, %d failed\n", n, failed);
	return failed || n == 0 ? 1 : 0;
}
