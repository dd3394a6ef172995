"""The compiled CPU update of DDPG, TD3 and SAC (offpolicy_update.c), and how agents call it.

`offpolicy_update.c` does a whole block of gradient steps in one call, in place on the agent's
torch tensors (parameters, the optimizers' Adam state, target networks), so checkpoints and
everything else see exactly what the eager update would leave. It is compiled on first use with the
system's C compiler into a per-user cache and calls the sgemm of the BLAS inside torch. Where any of
that is missing (no compiler, a torch build without an exported sgemm, a GPU device), `available()`
says why and the agents use their eager PyTorch update, which is also the reference the tests
compare this one against.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch

from spintui.profiles.provenance import cpu_identity

SOURCE = Path(__file__).with_name("offpolicy_update.c")
MAX_LAYERS = 8
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-shared"]

ABI_VERSION = 1  # SPINTUI_ABI_VERSION in offpolicy_update.c: raised whenever a layout below changes

_ptrs = ctypes.c_void_p * MAX_LAYERS
_int, _float, _ptr_t = ctypes.c_int, ctypes.c_float, ctypes.c_void_p

# The memory layout of the C structs Net and Block, described once: the ctypes structures are built
# from these lists, and a loaded library is checked against them field by field (check_layout).
NET_LAYOUT = (
    ("members", _int), ("layers", _int), ("sizes", _int * (MAX_LAYERS + 1)),
    ("w", _ptrs), ("b", _ptrs), ("gw", _ptrs), ("gb", _ptrs), ("mw", _ptrs), ("mb", _ptrs),
    ("vw", _ptrs), ("vb", _ptrs), ("sw", _ptrs), ("sb", _ptrs), ("tw", _ptrs), ("tb", _ptrs),
    ("lr", _float), ("beta1", _float), ("beta2", _float), ("eps", _float),
)
BLOCK_LAYOUT = (
    ("n_updates", _int), ("batch", _int), ("obs_dim", _int), ("act_dim", _int),
    ("obs", _ptr_t), ("act", _ptr_t), ("rew", _ptr_t), ("obs2", _ptr_t), ("discount", _ptr_t), ("noise", _ptr_t),
    ("act_scale", _ptr_t), ("act_center", _ptr_t),
    ("polyak", _float), ("policy_delay", _int),
    ("alpha", _ptr_t), ("auto_alpha", _int), ("target_entropy", _float),
    ("log_alpha", _ptr_t), ("log_alpha_m", _ptr_t), ("log_alpha_v", _ptr_t), ("log_alpha_step", _ptr_t),
    ("alpha_lr", _float), ("alpha_beta1", _float), ("alpha_beta2", _float), ("alpha_eps", _float),
    ("loss_q", _ptr_t), ("loss_pi", _ptr_t), ("q_vals", _ptr_t), ("logp", _ptr_t),
)


def structure(name: str, layout) -> type[ctypes.Structure]:
    return type(name, (ctypes.Structure,), {"_fields_": list(layout)})


NetStruct = structure("NetStruct", NET_LAYOUT)
BlockStruct = structure("BlockStruct", BLOCK_LAYOUT)


def check_layout(lib, structs=(("Net", 0, None), ("Block", 1, None)), version: int | None = None) -> str:
    """"" when the library's version, struct sizes and every field's name, offset and size agree with
    this module's description; else what differs first. `structs`: (C name, index, ctypes structure or
    None for this module's own), replaceable to check another description."""
    version = ABI_VERSION if version is None else version
    try:
        lib.spintui_abi_version.restype = ctypes.c_int
        lib.spintui_struct_size.restype = ctypes.c_long
        lib.spintui_struct_fields.restype = ctypes.c_int
        get_field = lib.spintui_struct_field
    except AttributeError:
        return "the library exports no layout (built from an older offpolicy_update.c)"
    get_field.restype = ctypes.c_int
    get_field.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p),
                          ctypes.POINTER(ctypes.c_long), ctypes.POINTER(ctypes.c_long)]
    theirs = lib.spintui_abi_version()
    if theirs != version:
        return f"layout version {theirs} in the library, {version} in native.py"
    for c_name, which, struct in structs:
        struct = struct or (NetStruct if which == 0 else BlockStruct)
        fields = [f[0] for f in struct._fields_]
        c_fields = lib.spintui_struct_fields(which)
        if c_fields != len(fields):
            return f"{c_name} has {c_fields} fields in C, {len(fields)} in native.py"
        for i, field in enumerate(fields):
            name, offset, size = ctypes.c_char_p(), ctypes.c_long(), ctypes.c_long()
            get_field(which, i, ctypes.byref(name), ctypes.byref(offset), ctypes.byref(size))
            ours = getattr(struct, field)
            if name.value.decode() != field or (offset.value, size.value) != (ours.offset, ours.size):
                return (f"{c_name} field {i} is {name.value.decode()} at offset {offset.value} ({size.value} bytes) "
                        f"in C, {field} at offset {ours.offset} ({ours.size} bytes) in native.py")
        if lib.spintui_struct_size(which) != ctypes.sizeof(struct):
            return f"{c_name} takes {lib.spintui_struct_size(which)} bytes in C, {ctypes.sizeof(struct)} in native.py"
    return ""


# --------------------------------------------------------------------------------------------------
# Building and loading


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "spintui" / "native"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _sgemm_address() -> int | None:
    """The Fortran-interface sgemm_ (32-bit integers) of the BLAS torch itself calls."""
    lib_dir = Path(torch.__file__).parent / "lib"
    candidates = [lib_dir / "libtorch_cpu.so", lib_dir / "libtorch_cpu.dylib", None]
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path) if path else None)
            return ctypes.cast(lib.sgemm_, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
    return None


def _build(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent trainers never load a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cc, *CFLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"compiling {SOURCE.name} with {cc} failed: {last}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@cache
def _load() -> tuple[ctypes.CDLL | None, str]:
    if sys.platform == "win32":
        return None, "the compiled update is built for Linux and macOS only"
    sgemm = _sgemm_address()
    if sgemm is None:
        return None, "this torch build exports no sgemm_"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler (cc, gcc or clang) on PATH"
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([cc, *CFLAGS, cpu_identity()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"offpolicy_update-{key}.so"
    if not target.exists():
        try:
            _build(cc, target)
        except (OSError, RuntimeError) as err:
            return None, str(err)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as err:
        return None, f"loading {target} failed: {err}"
    mismatch = check_layout(lib)
    if mismatch:
        return None, f"its memory layout does not match: {mismatch}"
    lib.spintui_set_sgemm(ctypes.c_void_p(sgemm))
    for name in ("spintui_sac_block", "spintui_td3_block"):
        getattr(lib, name).argtypes = [ctypes.POINTER(NetStruct), ctypes.POINTER(NetStruct),
                                       ctypes.POINTER(BlockStruct)]
        getattr(lib, name).restype = ctypes.c_int
    return lib, ""


def available() -> tuple[bool, str]:
    """(True, "") when the compiled update can run here, else (False, why not)."""
    lib, why = _load()
    return lib is not None, why


SPARSE_REASON = "it works on dense weight matrices, and this run's hidden layers are block-sparse"


def why_not(device: torch.device, hidden_sizes=(), block_sparse: bool = False) -> str:
    """Why the compiled update cannot run for these networks on `device` ("" when it can)."""
    if device.type != "cpu":
        return "it runs on the CPU only"
    if len(hidden_sizes) + 1 > MAX_LAYERS:
        return f"it supports at most {MAX_LAYERS - 1} hidden layers"
    if block_sparse:
        return SPARSE_REASON
    return available()[1]


def wanted(update: str, device: torch.device, hidden_sizes=(), block_sparse: bool = False) -> bool:
    """Whether an agent configured with `update` (auto, native or torch) uses the compiled update.

    `native` where it cannot run is an error, with the reason; `auto` quietly uses torch there
    (the run's first event says why: offpolicy.update_description)."""
    if update == "torch":
        return False
    why = why_not(device, hidden_sizes, block_sparse)
    if update == "native" and why:
        raise ValueError(f"--update native is not available: {why}; use --update auto or torch")
    return not why


# --------------------------------------------------------------------------------------------------
# Describing networks and blocks


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _check(t: torch.Tensor) -> torch.Tensor:
    if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError("the compiled update needs contiguous float32 CPU tensors")
    return t


def init_adam_state(optimizer: torch.optim.Adam) -> None:
    """Create Adam's per-parameter state the way torch.optim.Adam's first step does."""
    for p in optimizer.param_groups[0]["params"]:
        state = optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class NetView:
    """A network's tensors as the C code sees them: parameters [W0, b0, W1, b1, ...] with their
    gradients (owned here), Adam state (the optimizer's own) and optional target copy."""

    def __init__(self, params: list[torch.Tensor], optimizer: torch.optim.Adam, members: int,
                 target: list[torch.Tensor] | None = None):
        if len(params) > 2 * MAX_LAYERS:
            raise ValueError(f"the compiled update supports at most {MAX_LAYERS} layers")
        self.params, self.optimizer, self.members, self.target = params, optimizer, members, target
        self.grads = [torch.empty_like(p) for p in params]
        weights = params[0::2]
        sizes = [w.shape[-2] for w in weights] + [weights[-1].shape[-1]]
        self.sizes = sizes

    def struct(self) -> NetStruct:
        """Pointers are looked up on every call: loading a checkpoint replaces the optimizer's tensors."""
        init_adam_state(self.optimizer)
        group = self.optimizer.param_groups[0]
        if group.get("amsgrad") or group.get("weight_decay") or group.get("maximize"):
            raise ValueError("the compiled update implements plain Adam only")
        s = NetStruct()
        s.members, s.layers = self.members, len(self.sizes) - 1
        for i, size in enumerate(self.sizes):
            s.sizes[i] = size
        states = [self.optimizer.state[p] for p in self.params]
        for l in range(s.layers):
            w, b = 2 * l, 2 * l + 1
            s.w[l], s.b[l] = _ptr(_check(self.params[w])), _ptr(_check(self.params[b]))
            s.gw[l], s.gb[l] = _ptr(self.grads[w]), _ptr(self.grads[b])
            s.mw[l], s.mb[l] = _ptr(_check(states[w]["exp_avg"])), _ptr(_check(states[b]["exp_avg"]))
            s.vw[l], s.vb[l] = _ptr(_check(states[w]["exp_avg_sq"])), _ptr(_check(states[b]["exp_avg_sq"]))
            s.sw[l], s.sb[l] = _ptr(_check(states[w]["step"])), _ptr(_check(states[b]["step"]))
            if self.target is not None:
                s.tw[l], s.tb[l] = _ptr(_check(self.target[w])), _ptr(_check(self.target[b]))
        s.lr, (s.beta1, s.beta2), s.eps = group["lr"], group["betas"], group["eps"]
        return s


def block_struct(obs, act, rew, next_obs, discount, noise, act_scale, act_center, polyak: float,
                 loss_q, loss_pi, q_vals, logp=None, policy_delay: int = 1) -> tuple[BlockStruct, list]:
    """The block's inputs as contiguous tensors (kept alive by the returned list) and outputs."""
    keep = [_check(t.contiguous()) if t is not None else None
            for t in (obs, act, rew, next_obs, discount, noise, act_scale, act_center)]
    obs, act, rew, next_obs, discount, noise, act_scale, act_center = keep
    b = BlockStruct()
    b.n_updates, b.batch, b.obs_dim = obs.shape[0], obs.shape[1], obs.shape[2]
    b.act_dim = act.shape[2]
    b.obs, b.act, b.rew, b.obs2, b.discount = map(_ptr, (obs, act, rew, next_obs, discount))
    b.noise, b.act_scale, b.act_center = _ptr(noise), _ptr(act_scale), _ptr(act_center)
    b.polyak, b.policy_delay = polyak, policy_delay
    b.loss_q, b.loss_pi, b.q_vals, b.logp = map(_ptr, (_check(loss_q), _check(loss_pi), _check(q_vals),
                                                       None if logp is None else _check(logp)))
    return b, keep


def run_block(kind: str, actor: NetView, critic: NetView, block: BlockStruct) -> None:
    lib, why = _load()
    if lib is None:
        raise RuntimeError(why)
    fn = lib.spintui_sac_block if kind == "sac" else lib.spintui_td3_block
    actor_s, critic_s = actor.struct(), critic.struct()
    if fn(ctypes.byref(actor_s), ctypes.byref(critic_s), ctypes.byref(block)) != 0:
        raise MemoryError("the compiled update could not allocate its scratch memory")


class DeterministicAgentViews:
    """DDPG's and TD3's networks as the C code sees them (a tanh actor with a target copy, and
    `members` critics with target copies)."""

    def __init__(self, actor, actor_targ, pi_optimizer, critic, critic_targ, q_optimizer, members: int):
        self.actor = NetView(list(actor.parameters()), pi_optimizer, 1, target=list(actor_targ.parameters()))
        self.critic = NetView(list(critic.parameters()), q_optimizer, members, target=list(critic_targ.parameters()))
        self.act_scale, self.act_center, self.members = actor.act_scale, actor.act_center, members

    def update(self, obs, act, rew, next_obs, discount, noise, polyak: float, policy_delay: int) -> dict:
        """A block of DDPG/TD3 updates; returns LossQ (n), LossPi (one per actor step), Q (n, members, batch)."""
        n, batch = obs.shape[:2]
        stats = {"LossQ": torch.empty(n), "LossPi": torch.empty(-(-n // policy_delay)),
                 "Q": torch.empty(n, self.members, batch)}
        block, _keep = block_struct(obs, act, rew, next_obs, discount, noise, self.act_scale, self.act_center, polyak,
                                    stats["LossQ"], stats["LossPi"], stats["Q"], policy_delay=policy_delay)
        run_block("td3", self.actor, self.critic, block)
        return stats
