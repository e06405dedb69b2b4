/* A complete binary search tree of 511 nodes from a global root; the
 * subtree of 63 nodes at root->left->left->left is cut off without being
 * freed (a leaked subtree).
 * Expected: tnode reachable 448, unreachable 63. */
#include "hf.h"

struct tnode {
    int key;
    struct tnode *left, *right;
};

struct tnode *root;

static HF_NOINLINE struct tnode *build(int lo, int hi) {
    if (lo > hi) return NULL;
    int mid = (lo + hi) / 2;
    struct tnode *t = malloc(sizeof(struct tnode));
    t->key = mid;
    t->left = build(lo, mid - 1);
    t->right = build(mid + 1, hi);
    return t;
}

int main(void) {
    root = build(1, 511);
    root->left->left->left = NULL;
    hf_ready_and_block();
}
