/* The allocation is stored into a global. */
#include <stdio.h>
#include <stdlib.h>

struct config { int port; int workers; const char *name; };
struct stats { unsigned long hits, misses; };

struct config *g_config;
static struct stats *g_stats;

static void setup(size_t n) {
    g_config = malloc(sizeof(struct config)); /* expect: struct config */
    g_stats = malloc(n); /* expect: struct stats */
}

int main(void) {
    setup(sizeof(struct stats));
    g_config->port = 11211; g_config->workers = 4; g_config->name = "demo";
    g_stats->hits = 10; g_stats->misses = 2;
    printf("%s %d %d %lu\n", g_config->name, g_config->port, g_config->workers, g_stats->hits - g_stats->misses);
    return 0;
}
