/* Blocks of off-policy gradient steps (SAC, TD3, DDPG) on the CPU, over the memory of the agent's
 * torch tensors: parameters, Adam state and target networks are updated in place.
 *
 * The same arithmetic as the eager PyTorch updates in sac.py / td3.py / ddpg.py, which stay the
 * reference (tests compare the two). What it saves is per-operation overhead: at batch 100 and
 * 256-wide layers, an eager update spends more time dispatching ~700 small tensor operations and
 * passing activations through memory than in its matrix products. Here the big products go to
 * the BLAS that torch itself uses (its sgemm, passed in as a function pointer), and everything
 * else (bias, ReLU and its mask, the tiny input and output layers, the squashed Gaussian, Adam,
 * Polyak averaging) is a few loops over buffers that stay in cache.
 *
 * Layouts (row-major float32, as the torch modules store them): a network is `members` MLPs with
 * stacked weights; layer l of member k has W (in, out) at w[l] + k*in*out and b (out) at
 * b[l] + k*out. An MLP is the case members == 1.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LAYERS 8
/* Raised whenever Net or Block changes; native.py refuses a library whose version or layout differs. */
#define SPINTUI_ABI_VERSION 1

typedef void (*sgemm_fn)(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                         const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
                         const float *beta, float *c, const int *ldc);

typedef struct {
    int members, layers;
    int sizes[MAX_LAYERS + 1];
    float *w[MAX_LAYERS], *b[MAX_LAYERS];    /* parameters */
    float *gw[MAX_LAYERS], *gb[MAX_LAYERS];  /* gradients (scratch, same layout) */
    float *mw[MAX_LAYERS], *mb[MAX_LAYERS];  /* Adam exp_avg */
    float *vw[MAX_LAYERS], *vb[MAX_LAYERS];  /* Adam exp_avg_sq */
    float *sw[MAX_LAYERS], *sb[MAX_LAYERS];  /* Adam step counters (0-dim float32 tensors) */
    float *tw[MAX_LAYERS], *tb[MAX_LAYERS];  /* target network, or NULL */
    float lr, beta1, beta2, eps;
} Net;

/* What one block needs besides the networks. Pointers are into torch tensors of shape
 * (n_updates, batch, ...) unless noted. */
typedef struct {
    int n_updates, batch, obs_dim, act_dim;
    const float *obs, *act, *rew, *obs2, *discount;  /* discount = gamma * (1 - terminated) */
    const float *noise;      /* SAC: (n, 2, batch, act) N(0,1); TD3: (n, batch, act) clipped smoothing noise; DDPG: NULL */
    const float *act_scale, *act_center;  /* (act) */
    float polyak;
    int policy_delay;        /* TD3/DDPG: actor and targets step when j % policy_delay == 0 */
    /* SAC's entropy temperature: alpha = exp(log_alpha) when auto_alpha, else *alpha fixed. */
    float *alpha;            /* (1), read and (auto) written */
    int auto_alpha;
    float target_entropy;
    float *log_alpha, *log_alpha_m, *log_alpha_v, *log_alpha_step;
    float alpha_lr, alpha_beta1, alpha_beta2, alpha_eps;
    /* Statistics out. */
    float *loss_q, *loss_pi;  /* (n) and (n / policy_delay rounded up) */
    float *q_vals;            /* (n, members, batch) */
    float *logp;              /* SAC: (n, batch) */
} Block;

static sgemm_fn sgemm;

void spintui_set_sgemm(void *fn) { sgemm = (sgemm_fn)fn; }

/* ---------------------------------------------------------------------------------------------
 * Phase timing for traces (native_phases.py): off unless asked for, then the exclusive wall time
 * and entry count of each phase, so a trace of the C update is not one opaque call. Off, each
 * switch is one test of a flag. */

enum { PH_NONE, PH_BACKUP, PH_CRITIC, PH_ACTOR, PH_TEMPERATURE, PH_ADAM, PH_POLYAK, PH_COUNT };
static int phase_on, phase_now;
static double phase_last, phase_seconds[PH_COUNT];
static long long phase_calls[PH_COUNT];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Time from now on goes to phase p (counted as an entry when `enter`); returns the phase before. */
static int phase_switch(int p, int enter) {
    if (!phase_on) return p;
    const double t = now_s();
    const int prev = phase_now;
    phase_seconds[prev] += t - phase_last;
    phase_last = t;
    phase_now = p;
    if (enter) phase_calls[p]++;
    return prev;
}

/* Turn timing on (1) or off (0); either way the totals start again from zero. */
void spintui_phase_timing(int on) {
    memset(phase_seconds, 0, sizeof phase_seconds);
    memset(phase_calls, 0, sizeof phase_calls);
    phase_on = on;
    phase_now = PH_NONE;
    phase_last = now_s();
}

/* Copy up to n phases' totals (seconds, entries); returns how many phases there are. */
int spintui_phase_read(double *seconds, long long *calls, int n) {
    for (int i = 0; i < n && i < PH_COUNT; i++) {
        seconds[i] = phase_seconds[i];
        calls[i] = phase_calls[i];
    }
    return PH_COUNT;
}

/* ---------------------------------------------------------------------------------------------
 * Dense layers. Big products go to sgemm (column-major, so row-major Y = X W is Y^T = W^T X^T);
 * products with a side under SMALL are plain loops, where a BLAS call costs more than the work. */

#define SMALL 16

/* max(x, 0) that keeps NaN, as torch's relu does, and vectorises (fmaxf is a libm call at -O3). */
static inline float relu_f(float x) { return x < 0.0f ? 0.0f : x; }

static inline float *member_w(const Net *net, float *const *w, int l, int k) {
    return w[l] + (size_t)k * net->sizes[l] * net->sizes[l + 1];
}
static inline float *member_b(const Net *net, float *const *b, int l, int k) {
    return b[l] + (size_t)k * net->sizes[l + 1];
}

/* y (m, n) = x (m, k) w (k, n) + bias, then ReLU if relu. */
static void linear_forward(const float *x, int m, int k, const float *w, const float *bias, int n, float *y, int relu) {
    if (k >= SMALL && n >= SMALL) {
        const float one = 1.0f, zero = 0.0f;
        sgemm("N", "N", &n, &m, &k, &one, w, &n, x, &k, &zero, y, &n);
        for (int i = 0; i < m; i++) {
            float *row = y + (size_t)i * n;
            if (relu)
                for (int j = 0; j < n; j++) row[j] = relu_f(row[j] + bias[j]);
            else
                for (int j = 0; j < n; j++) row[j] += bias[j];
        }
    } else if (n < SMALL) {  /* narrow output: dot products with the columns of w */
        float *wt = malloc(sizeof(float) * n * k);  /* w transposed: its columns contiguous */
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < n; j++) wt[(size_t)j * k + kk] = w[(size_t)kk * n + j];
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * k;
            for (int j = 0; j < n; j++) {
                const float *wj = wt + (size_t)j * k;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int kk = 0; kk < k; kk++) s += xi[kk] * wj[kk];
                s += bias[j];
                y[(size_t)i * n + j] = relu ? relu_f(s) : s;
            }
        }
        free(wt);
    } else {  /* narrow input: a few row updates */
        for (int i = 0; i < m; i++) {
            float *row = y + (size_t)i * n;
            const float *xi = x + (size_t)i * k;
            memcpy(row, bias, sizeof(float) * n);
            for (int kk = 0; kk < k; kk++) {
                const float a = xi[kk], *wk = w + (size_t)kk * n;
                for (int j = 0; j < n; j++) row[j] += a * wk[j];
            }
            if (relu)
                for (int j = 0; j < n; j++) row[j] = relu_f(row[j]);
        }
    }
}

/* gw (k, n) = x^T g, gb (n) = column sums of g; g is (m, n). */
static void linear_weight_grad(const float *x, int m, int k, const float *g, int n, float *gw, float *gb) {
    for (int j = 0; j < n; j++) gb[j] = 0.0f;
    for (int i = 0; i < m; i++) {
        const float *gi = g + (size_t)i * n;
        for (int j = 0; j < n; j++) gb[j] += gi[j];
    }
    if (k >= SMALL && n >= SMALL) {
        const float one = 1.0f, zero = 0.0f;
        sgemm("N", "T", &n, &k, &m, &one, g, &n, x, &k, &zero, gw, &n);
    } else if (n < SMALL) {  /* narrow output: gw's columns are sums of rows of x */
        float *gwt = calloc((size_t)n * k, sizeof(float));
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * k;
            for (int j = 0; j < n; j++) {
                const float a = g[(size_t)i * n + j];
                float *col = gwt + (size_t)j * k;
                for (int kk = 0; kk < k; kk++) col[kk] += a * xi[kk];
            }
        }
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < n; j++) gw[(size_t)kk * n + j] = gwt[(size_t)j * k + kk];
        free(gwt);
    } else {  /* narrow input */
        memset(gw, 0, sizeof(float) * k * n);
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)i * k, *gi = g + (size_t)i * n;
            for (int kk = 0; kk < k; kk++) {
                const float a = xi[kk];
                float *row = gw + (size_t)kk * n;
                for (int j = 0; j < n; j++) row[j] += a * gi[j];
            }
        }
    }
}

/* gx (m, k) = g (m, n) w^T. */
static void linear_input_grad(const float *g, int m, int n, const float *w, int k, float *gx) {
    if (k >= SMALL && n >= SMALL) {
        const float one = 1.0f, zero = 0.0f;
        sgemm("T", "N", &k, &m, &n, &one, w, &n, g, &n, &zero, gx, &k);
    } else if (n < SMALL) {  /* narrow output: rows of gx are combinations of w's columns */
        float *wt = malloc(sizeof(float) * n * k);  /* w transposed: its columns contiguous */
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < n; j++) wt[(size_t)j * k + kk] = w[(size_t)kk * n + j];
        for (int i = 0; i < m; i++) {
            float *out = gx + (size_t)i * k;
            memset(out, 0, sizeof(float) * k);
            for (int j = 0; j < n; j++) {
                const float a = g[(size_t)i * n + j], *wj = wt + (size_t)j * k;
                for (int kk = 0; kk < k; kk++) out[kk] += a * wj[kk];
            }
        }
        free(wt);
    } else {  /* narrow input: dot products with the rows of w */
        for (int i = 0; i < m; i++) {
            const float *gi = g + (size_t)i * n;
            float *out = gx + (size_t)i * k;
            for (int kk = 0; kk < k; kk++) {
                const float *wk = w + (size_t)kk * n;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int j = 0; j < n; j++) s += gi[j] * wk[j];
                out[kk] = s;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Networks. `acts` holds each layer's output for every member: acts[l] + k*m*sizes[l+1]. */

typedef struct {
    float *h[MAX_LAYERS];
} Acts;

static void acts_alloc(Acts *a, const Net *net, int m) {
    for (int l = 0; l < net->layers; l++) a->h[l] = malloc(sizeof(float) * net->members * m * net->sizes[l + 1]);
}
static int acts_ok(const Acts *a, const Net *net) {
    for (int l = 0; l < net->layers; l++)
        if (!a->h[l]) return 0;
    return 1;
}
static void acts_free(Acts *a, const Net *net) {
    for (int l = 0; l < net->layers; l++) free(a->h[l]);
}
static inline float *act_of(const Net *net, const Acts *a, int l, int k, int m) {
    return a->h[l] + (size_t)k * m * net->sizes[l + 1];
}

/* Member k's forward pass on x (m, sizes[0]); the output is act_of(layers - 1). */
static void net_forward(const Net *net, int target, int k, const float *x, int m, const Acts *a) {
    float *const *w = target ? net->tw : net->w, *const *b = target ? net->tb : net->b;
    const float *in = x;
    for (int l = 0; l < net->layers; l++) {
        float *out = act_of(net, a, l, k, m);
        linear_forward(in, m, net->sizes[l], member_w(net, w, l, k), member_b(net, b, l, k), net->sizes[l + 1], out,
                       l < net->layers - 1);
        in = out;
    }
}

/* Backward pass of member k from g (m, out): the gradient of the loss with respect to the last
 * layer's output. Writes weight gradients when want_weights, the input gradient into gx when not
 * NULL. g and scratch (m * widest layer each) are overwritten. */
static void net_backward(const Net *net, int k, const float *x, int m, const Acts *a, float *g, float *scratch,
                         int want_weights, float *gx) {
    for (int l = net->layers - 1; l >= 0; l--) {
        const int in_dim = net->sizes[l], out_dim = net->sizes[l + 1];
        const float *in = l == 0 ? x : act_of(net, a, l - 1, k, m);
        const float *w = member_w(net, net->w, l, k);
        if (want_weights)
            linear_weight_grad(in, m, in_dim, g, out_dim, member_w(net, net->gw, l, k), member_b(net, net->gb, l, k));
        if (l == 0) {
            if (gx) linear_input_grad(g, m, out_dim, w, in_dim, gx);
            break;
        }
        linear_input_grad(g, m, out_dim, w, in_dim, scratch);
        for (size_t i = 0; i < (size_t)m * in_dim; i++)  /* through the ReLU of layer l - 1 */
            scratch[i] = in[i] > 0.0f ? scratch[i] : 0.0f;
        float *t = g;
        g = scratch;
        scratch = t;
    }
}

/* torch's Adam (amsgrad off, no weight decay) on n values with one step counter. */
static void adam_tensor(float *p, const float *g, float *m, float *v, int64_t n, float *step, float lr, float beta1,
                        float beta2, float eps) {
    *step += 1.0f;
    const double t = *step;
    const float step_size = (float)(lr / (1.0 - pow(beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, t));
    const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i];
        const float mi = m[i] + one_minus_b1 * (gi - m[i]);
        const float vi = beta2 * v[i] + one_minus_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

static void net_adam(const Net *net) {
    const int prev = phase_switch(PH_ADAM, 1);
    for (int l = 0; l < net->layers; l++) {
        const int64_t nw = (int64_t)net->members * net->sizes[l] * net->sizes[l + 1];
        const int64_t nb = (int64_t)net->members * net->sizes[l + 1];
        adam_tensor(net->w[l], net->gw[l], net->mw[l], net->vw[l], nw, net->sw[l], net->lr, net->beta1, net->beta2,
                    net->eps);
        adam_tensor(net->b[l], net->gb[l], net->mb[l], net->vb[l], nb, net->sb[l], net->lr, net->beta1, net->beta2,
                    net->eps);
    }
    phase_switch(prev, 0);
}

/* targ <- targ + (1 - polyak) (online - targ), torch's lerp_. */
static void net_polyak(const Net *net, float polyak) {
    const float weight = 1.0f - polyak;
    const int prev = phase_switch(PH_POLYAK, 1);
    for (int l = 0; l < net->layers; l++) {
        const int64_t nw = (int64_t)net->members * net->sizes[l] * net->sizes[l + 1];
        const int64_t nb = (int64_t)net->members * net->sizes[l + 1];
        float *tw = net->tw[l], *tb = net->tb[l];
        const float *w = net->w[l], *b = net->b[l];
        for (int64_t i = 0; i < nw; i++) tw[i] += weight * (w[i] - tw[i]);
        for (int64_t i = 0; i < nb; i++) tb[i] += weight * (b[i] - tb[i]);
    }
    phase_switch(prev, 0);
}

static int widest(const Net *net) {
    int w = 0;
    for (int l = 0; l <= net->layers; l++)
        if (net->sizes[l] > w) w = net->sizes[l];
    return w;
}

/* x (m, obs + act) = [obs | act] */
static void concat(const float *obs, int obs_dim, const float *act, int act_dim, int m, float *x) {
    for (int i = 0; i < m; i++) {
        memcpy(x + (size_t)i * (obs_dim + act_dim), obs + (size_t)i * obs_dim, sizeof(float) * obs_dim);
        memcpy(x + (size_t)i * (obs_dim + act_dim) + obs_dim, act + (size_t)i * act_dim, sizeof(float) * act_dim);
    }
}

/* Critic regression step shared by all three: q_k(o, a) onto backup, both critics stepped.
 * Returns LossQ = sum_k mean (q_k - backup)^2 and writes q (members, m). */
static float critic_step(const Net *critic, const Block *blk, const float *x, const float *backup, const Acts *acts,
                         float *g, float *scratch, float *q_out) {
    const int m = blk->batch, last = critic->layers - 1;
    float loss = 0.0f;
    for (int k = 0; k < critic->members; k++) {
        net_forward(critic, 0, k, x, m, acts);
        const float *q = act_of(critic, acts, last, k, m);
        float sq = 0.0f;
        for (int i = 0; i < m; i++) {
            const float d = q[i] - backup[i];
            sq += d * d;
            g[i] = 2.0f * d / m;
            q_out[(size_t)k * m + i] = q[i];
        }
        loss += sq / m;
        net_backward(critic, k, x, m, acts, g, scratch, 1, NULL);
    }
    net_adam(critic);
    return loss;
}

/* The smallest of the critic members' outputs for sample i. */
static inline float q_min(const Net *critic, const Acts *qa, int m, int i) {
    const int last = critic->layers - 1;
    float q = act_of(critic, qa, last, 0, m)[i];
    for (int k = 1; k < critic->members; k++) q = fminf(q, act_of(critic, qa, last, k, m)[i]);
    return q;
}

/* Scratch memory of one block: allocated once per call, shared by all its updates. */
typedef struct {
    Acts qa, pa;                /* activations of the critics and of the actor */
    float *x, *gx;              /* a critic input [obs | act] and its gradient, (m, obs + act) */
    float *g, *scratch;         /* backward-pass buffers, (m, widest layer) */
    float *a2, *u, *std, *gpi;  /* (m, act): actions; SAC's pre-tanh sample, its std, d LossPi / d action */
    float *backup, *logp, *gq;  /* (m), (m), (members, m) */
} Work;

static void work_free(Work *w, const Net *actor, const Net *critic) {
    acts_free(&w->qa, critic);
    acts_free(&w->pa, actor);
    float *bufs[] = {w->x, w->gx, w->g, w->scratch, w->a2, w->u, w->std, w->gpi, w->backup, w->logp, w->gq};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* 0, or -1 (everything freed) when memory runs out. */
static int work_alloc(Work *w, const Net *actor, const Net *critic, const Block *blk) {
    const size_t m = blk->batch, A = blk->act_dim, in = blk->obs_dim + blk->act_dim;
    const size_t wid = widest(critic) > widest(actor) ? widest(critic) : widest(actor);
    acts_alloc(&w->qa, critic, m);
    acts_alloc(&w->pa, actor, m);
    w->x = malloc(sizeof(float) * m * in);
    w->gx = malloc(sizeof(float) * m * in);
    w->g = malloc(sizeof(float) * m * wid);
    w->scratch = malloc(sizeof(float) * m * wid);
    w->a2 = malloc(sizeof(float) * m * A);
    w->u = malloc(sizeof(float) * m * A);
    w->std = malloc(sizeof(float) * m * A);
    w->gpi = malloc(sizeof(float) * m * A);
    w->backup = malloc(sizeof(float) * m);
    w->logp = malloc(sizeof(float) * m);
    w->gq = malloc(sizeof(float) * critic->members * m);
    if (acts_ok(&w->qa, critic) && acts_ok(&w->pa, actor) && w->x && w->gx && w->g && w->scratch && w->a2 && w->u &&
        w->std && w->gpi && w->backup && w->logp && w->gq)
        return 0;
    work_free(w, actor, critic);
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * SAC (see sac.py for the equations). */

static inline float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* Squashed Gaussian from the actor's output (m, 2A): action, log-prob, and what the backward needs. */
static void squash(const float *out, int m, int A, const float *eps, const float *scale, const float *center,
                   float *action, float *logp, float *u_out, float *std_out) {
    const float half_log_2pi = 0.91893853320467274f, log2 = 0.69314718055994531f;
    for (int i = 0; i < m; i++) {
        float neg = 0.0f;
        for (int j = 0; j < A; j++) {
            const float mu = out[(size_t)i * 2 * A + j];
            const float log_std = fminf(fmaxf(out[(size_t)i * 2 * A + A + j], -20.0f), 2.0f);
            const float std = expf(log_std), e = eps[(size_t)i * A + j];
            const float u = mu + std * e;
            neg += log_std + 0.5f * e * e + 2.0f * (log2 - u - softplus(-2.0f * u));
            action[(size_t)i * A + j] = center[j] + tanhf(u) * scale[j];
            if (u_out) {
                u_out[(size_t)i * A + j] = u;
                std_out[(size_t)i * A + j] = std;
            }
        }
        logp[i] = -neg - A * half_log_2pi;
    }
}

/* a' ~ pi(.|o') into w->a2 and its log-prob into w->logp, for the backup. */
static void sac_next_action(const Net *actor, const Block *blk, const Work *w, int j, const float *o2) {
    const int m = blk->batch, A = blk->act_dim;
    const float *eps_next = blk->noise + (size_t)j * 2 * m * A;
    net_forward(actor, 0, 0, o2, m, &w->pa);
    squash(act_of(actor, &w->pa, actor->layers - 1, 0, m), m, A, eps_next, blk->act_scale, blk->act_center, w->a2,
           w->logp, NULL, NULL);
}

/* Actor through the stepped critics, whose weights take no gradient here; then the temperature
 * (auto) and the critics' targets. */
static void sac_actor_step(const Net *actor, const Net *critic, const Block *blk, const Work *w, int j,
                           const float *o, float alpha) {
    const int m = blk->batch, A = blk->act_dim, O = blk->obs_dim, K = critic->members;
    const int qlast = critic->layers - 1, alast = actor->layers - 1;
    const Acts *qa = &w->qa, *pa = &w->pa;
    float *x = w->x, *g = w->g, *scratch = w->scratch, *gx = w->gx;
    float *u = w->u, *std = w->std, *gpi = w->gpi, *gq = w->gq;
    const float *eps_now = blk->noise + (size_t)j * 2 * m * A + (size_t)m * A;

    net_forward(actor, 0, 0, o, m, pa);
    float *pi = w->a2, *logp_pi = blk->logp + (size_t)j * m;
    squash(act_of(actor, pa, alast, 0, m), m, A, eps_now, blk->act_scale, blk->act_center, pi, logp_pi, u, std);
    concat(o, O, pi, A, m, x);
    for (int k = 0; k < K; k++) net_forward(critic, 0, k, x, m, qa);
    float loss_pi = 0.0f;
    for (int i = 0; i < m; i++) {  /* min over critics; a tie splits the gradient as torch's amin does */
        const float qmin = q_min(critic, qa, m, i);
        int ties = 0;
        for (int k = 0; k < K; k++) ties += act_of(critic, qa, qlast, k, m)[i] == qmin;
        for (int k = 0; k < K; k++) gq[(size_t)k * m + i] = act_of(critic, qa, qlast, k, m)[i] == qmin ? -1.0f / m / ties : 0.0f;
        loss_pi += alpha * logp_pi[i] - qmin;
    }
    blk->loss_pi[j] = loss_pi / m;
    memset(gpi, 0, sizeof(float) * m * A);
    for (int k = 0; k < K; k++) {
        memcpy(g, gq + (size_t)k * m, sizeof(float) * m);
        net_backward(critic, k, x, m, qa, g, scratch, 0, gx);
        for (int i = 0; i < m; i++)
            for (int jj = 0; jj < A; jj++) gpi[(size_t)i * A + jj] += gx[(size_t)i * (O + A) + O + jj];
    }
    /* Through the squashing and the reparameterisation into the actor's output (mu | log_std). */
    const float *out = act_of(actor, pa, alast, 0, m);
    const float dlogp = alpha / m;
    for (int i = 0; i < m; i++)
        for (int jj = 0; jj < A; jj++) {
            const size_t ij = (size_t)i * A + jj;
            const float t = tanhf(u[ij]);
            /* d logp / du = -2 (-1 + 2 sigmoid(-2u)), the derivative of the softplus form above */
            const float gu = dlogp * (2.0f - 4.0f * sigmoid(-2.0f * u[ij])) + gpi[ij] * blk->act_scale[jj] * (1.0f - t * t);
            const float raw = out[(size_t)i * 2 * A + A + jj];
            g[(size_t)i * 2 * A + jj] = gu;
            g[(size_t)i * 2 * A + A + jj] = raw >= -20.0f && raw <= 2.0f ? gu * std[ij] * eps_now[ij] - dlogp : 0.0f;
        }
    net_backward(actor, 0, o, m, pa, g, scratch, 1, NULL);
    net_adam(actor);

    if (blk->auto_alpha) {
        const int prev = phase_switch(PH_TEMPERATURE, 1);
        float s = 0.0f;
        for (int i = 0; i < m; i++) s += logp_pi[i] + blk->target_entropy;
        const float grad = -s / m;
        adam_tensor(blk->log_alpha, &grad, blk->log_alpha_m, blk->log_alpha_v, 1, blk->log_alpha_step,
                    blk->alpha_lr, blk->alpha_beta1, blk->alpha_beta2, blk->alpha_eps);
        *blk->alpha = expf(*blk->log_alpha);
        phase_switch(prev, 0);
    }
    net_polyak(critic, blk->polyak);
}

/* ---------------------------------------------------------------------------------------------
 * TD3 and DDPG (see td3.py, ddpg.py): a deterministic tanh actor scaled to the bounds; the actor
 * follows critic member 0. DDPG is one critic, no smoothing noise and policy_delay 1. */

/* The target policy's action at o' into w->a2, smoothed and clipped to the bounds (TD3). */
static void td3_next_action(const Net *actor, const Block *blk, const Work *w, int j, const float *o2) {
    const int m = blk->batch, A = blk->act_dim;
    float *a2 = w->a2;
    net_forward(actor, 1, 0, o2, m, &w->pa);
    const float *out = act_of(actor, &w->pa, actor->layers - 1, 0, m);
    for (int i = 0; i < m; i++)
        for (int jj = 0; jj < A; jj++) {
            const size_t ij = (size_t)i * A + jj;
            float v = blk->act_center[jj] + tanhf(out[ij]) * blk->act_scale[jj];
            if (blk->noise) {
                const float lo = blk->act_center[jj] - blk->act_scale[jj], hi = blk->act_center[jj] + blk->act_scale[jj];
                v = fminf(fmaxf(v + blk->noise[(size_t)j * m * A + ij], lo), hi);
            }
            a2[ij] = v;
        }
}

/* Actor: maximise Q_1(o, mu(o)) through the stepped critic; then both targets. */
static void td3_actor_step(const Net *actor, const Net *critic, const Block *blk, const Work *w, int j,
                           const float *o) {
    const int m = blk->batch, A = blk->act_dim, O = blk->obs_dim;
    const int qlast = critic->layers - 1, alast = actor->layers - 1;
    const Acts *qa = &w->qa, *pa = &w->pa;
    float *x = w->x, *g = w->g, *scratch = w->scratch, *gx = w->gx, *a2 = w->a2;

    net_forward(actor, 0, 0, o, m, pa);
    const float *out = act_of(actor, pa, alast, 0, m);
    for (int i = 0; i < m; i++)
        for (int jj = 0; jj < A; jj++)
            a2[(size_t)i * A + jj] = blk->act_center[jj] + tanhf(out[(size_t)i * A + jj]) * blk->act_scale[jj];
    concat(o, O, a2, A, m, x);
    net_forward(critic, 0, 0, x, m, qa);
    const float *q = act_of(critic, qa, qlast, 0, m);
    float s = 0.0f;
    for (int i = 0; i < m; i++) {
        s += q[i];
        g[i] = -1.0f / m;
    }
    blk->loss_pi[j / blk->policy_delay] = -s / m;
    net_backward(critic, 0, x, m, qa, g, scratch, 0, gx);
    for (int i = 0; i < m; i++)
        for (int jj = 0; jj < A; jj++) {
            const float t = tanhf(out[(size_t)i * A + jj]);
            g[(size_t)i * A + jj] = gx[(size_t)i * (O + A) + O + jj] * blk->act_scale[jj] * (1.0f - t * t);
        }
    net_backward(actor, 0, o, m, pa, g, scratch, 1, NULL);
    net_adam(actor);
    net_polyak(actor, blk->polyak);
    net_polyak(critic, blk->polyak);
}

/* ---------------------------------------------------------------------------------------------
 * A block of updates. Each update: the backup from the target critics at the next action (SAC: a
 * sample of the policy, less alpha times its log-prob; TD3/DDPG: the target policy's action), the
 * critics' step onto it, then the actor's step (TD3/DDPG: on every policy_delay-th update). */

/* Returns 0, or -1 when its scratch memory could not be allocated (nothing is updated then). */
static int offpolicy_block(const Net *actor, const Net *critic, const Block *blk, int sac) {
    const int m = blk->batch, A = blk->act_dim, O = blk->obs_dim, K = critic->members;
    Work work;
    if (work_alloc(&work, actor, critic, blk) != 0) return -1;
    float *x = work.x, *backup = work.backup, *logp = work.logp;

    for (int j = 0; j < blk->n_updates; j++) {
        const float *o = blk->obs + (size_t)j * m * O, *o2 = blk->obs2 + (size_t)j * m * O;
        const float *a = blk->act + (size_t)j * m * A, *r = blk->rew + (size_t)j * m;
        const float *disc = blk->discount + (size_t)j * m;
        const float alpha = sac ? *blk->alpha : 0.0f;  /* this update's, before its own step (auto) */
        phase_switch(PH_BACKUP, 1);

        if (sac)
            sac_next_action(actor, blk, &work, j, o2);
        else
            td3_next_action(actor, blk, &work, j, o2);
        concat(o2, O, work.a2, A, m, x);
        for (int k = 0; k < K; k++) net_forward(critic, 1, k, x, m, &work.qa);
        for (int i = 0; i < m; i++) {
            const float qmin = q_min(critic, &work.qa, m, i);
            backup[i] = sac ? r[i] + disc[i] * (qmin - alpha * logp[i]) : r[i] + disc[i] * qmin;
        }

        phase_switch(PH_CRITIC, 1);
        concat(o, O, a, A, m, x);
        blk->loss_q[j] = critic_step(critic, blk, x, backup, &work.qa, work.g, work.scratch, blk->q_vals + (size_t)j * K * m);
        if (sac || j % blk->policy_delay == 0) phase_switch(PH_ACTOR, 1);
        if (sac)
            sac_actor_step(actor, critic, blk, &work, j, o, alpha);
        else if (j % blk->policy_delay == 0)
            td3_actor_step(actor, critic, blk, &work, j, o);
    }
    phase_switch(PH_NONE, 0);

    work_free(&work, actor, critic);
    return 0;
}

int spintui_sac_block(const Net *actor, const Net *critic, const Block *blk) {
    return offpolicy_block(actor, critic, blk, 1);
}

int spintui_td3_block(const Net *actor, const Net *critic, const Block *blk) {
    return offpolicy_block(actor, critic, blk, 0);
}

/* ---------------------------------------------------------------------------------------------
 * The layout of Net and Block as this compiler laid them out, for native.py to check against its
 * own description before passing any pointer (a mismatch there would silently corrupt memory). */

typedef struct {
    const char *name;
    long offset, size;
} FieldInfo;

#define FIELD(S, f) {#f, (long)offsetof(S, f), (long)sizeof(((S *)0)->f)}

static const FieldInfo NET_FIELDS[] = {
    FIELD(Net, members), FIELD(Net, layers), FIELD(Net, sizes), FIELD(Net, w), FIELD(Net, b), FIELD(Net, gw),
    FIELD(Net, gb), FIELD(Net, mw), FIELD(Net, mb), FIELD(Net, vw), FIELD(Net, vb), FIELD(Net, sw), FIELD(Net, sb),
    FIELD(Net, tw), FIELD(Net, tb), FIELD(Net, lr), FIELD(Net, beta1), FIELD(Net, beta2), FIELD(Net, eps),
};

static const FieldInfo BLOCK_FIELDS[] = {
    FIELD(Block, n_updates), FIELD(Block, batch), FIELD(Block, obs_dim), FIELD(Block, act_dim), FIELD(Block, obs),
    FIELD(Block, act), FIELD(Block, rew), FIELD(Block, obs2), FIELD(Block, discount), FIELD(Block, noise),
    FIELD(Block, act_scale), FIELD(Block, act_center), FIELD(Block, polyak), FIELD(Block, policy_delay),
    FIELD(Block, alpha), FIELD(Block, auto_alpha), FIELD(Block, target_entropy), FIELD(Block, log_alpha),
    FIELD(Block, log_alpha_m), FIELD(Block, log_alpha_v), FIELD(Block, log_alpha_step), FIELD(Block, alpha_lr),
    FIELD(Block, alpha_beta1), FIELD(Block, alpha_beta2), FIELD(Block, alpha_eps), FIELD(Block, loss_q),
    FIELD(Block, loss_pi), FIELD(Block, q_vals), FIELD(Block, logp),
};

int spintui_abi_version(void) { return SPINTUI_ABI_VERSION; }

/* which: 0 Net, 1 Block. The struct's size in bytes and its number of fields. */
long spintui_struct_size(int which) { return which == 0 ? (long)sizeof(Net) : (long)sizeof(Block); }

int spintui_struct_fields(int which) {
    if (which == 0) return (int)(sizeof NET_FIELDS / sizeof NET_FIELDS[0]);
    return (int)(sizeof BLOCK_FIELDS / sizeof BLOCK_FIELDS[0]);
}

/* Field i of struct `which`: its name, offset and size; -1 past the last field. */
int spintui_struct_field(int which, int i, const char **name, long *offset, long *size) {
    if (i < 0 || i >= spintui_struct_fields(which)) return -1;
    const FieldInfo *f = (which == 0 ? NET_FIELDS : BLOCK_FIELDS) + i;
    *name = f->name;
    *offset = f->offset;
    *size = f->size;
    return 0;
}
