# SPDX-License-Identifier: Apache-2.0
#
# loopback-env.sh: keep Open MPI, PMIx and UCX on loopback and quiet, for
# tests, CI and development on one machine. Source it (bash or sh):
#
#   . scripts/loopback-env.sh
#   mpirun -np 3 ./prog                 # works as root too, 3-4 ranks on 2 cores
#   srun -n 3 ./prog                    # under scripts/slurm-up.sh (MpiDefault=pmix)
#
# Every variable is set only if the caller has not set it already, so a user
# can still choose e.g. UCX_NET_DEVICES=mlx5_0:1 or another Open MPI BTL.
#
# What each setting is for:
#   OMPI_MCA_pml=ob1, OMPI_MCA_btl=self,vader,tcp
#       Open MPI's own messaging on shared memory and TCP only: no UCX PML
#       (dsdfs brings its own UCX context), no openib/ofi probing and warnings.
#   OMPI_MCA_osc=sm,ucx,pt2pt, OMPI_MCA_opal_common_ucx_tls=any,
#   OMPI_MCA_opal_common_ucx_devices=any
#       one-sided MPI that works for every window flavor, with and without
#       MPI_THREAD_MULTIPLE, under mpirun, srun and as a singleton. Found by
#       trial: osc/sm only serves MPI_Win_allocate(_shared); osc/pt2pt refuses
#       MPI_THREAD_MULTIPLE (MPI_Win_create fails); osc/ucx disqualifies
#       itself without InfiniBand devices unless its tls/devices are "any";
#       Open MPI's default list picks a component whose MPI_Win_create fails
#       over TCP. (osc/ucx then runs UCX over shared memory and TCP on lo.)
#   OMPI_MCA_btl_tcp_if_include=lo, OMPI_MCA_oob_tcp_if_include=lo
#       MPI traffic and mpirun/orted control traffic on loopback only.
#   OMPI_MCA_btl_vader_single_copy_mechanism=none
#       containers often forbid CMA (process_vm_readv); avoid the warning.
#   OMPI_MCA_rmaps_base_oversubscribe=1, OMPI_MCA_hwloc_base_binding_policy=none
#       `mpirun -np 4` on a 2-core machine without --oversubscribe, and no
#       ranks pinned to the same core.
#   OMPI_MCA_mpi_warn_on_fork=0   the launcher forks (fusermount3); no warning.
#   PMIX_MCA_gds=hash          PMIx's shared-memory dstore (gds/ds21) fails in
#       some containers; the hash store always works (mpirun, singleton, srun).
#   PMIX_MCA_ptl_tcp_if_include=lo   PMIx's TCP listener on loopback.
#   UCX_NET_DEVICES=lo, UCX_TCP_... : UCX (dsdfs's transport) over loopback.
#   UCX_WARN_UNUSED_ENV_VARS=n  no warning for UCX_* variables a process ignores.
#   OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 only when running as root: mpirun
#       refuses root otherwise (CI runs as root).

_dsdfs_default() {
  # _dsdfs_default NAME VALUE: export NAME=VALUE unless NAME is set already
  eval "_dsdfs_cur=\${$1+set}"
  if [ -z "$_dsdfs_cur" ]; then
    eval "export $1=\$2"
  else
    eval "export $1"
  fi
  unset _dsdfs_cur
}

_dsdfs_default OMPI_MCA_pml ob1
_dsdfs_default OMPI_MCA_btl self,vader,tcp
_dsdfs_default OMPI_MCA_osc sm,ucx,pt2pt
_dsdfs_default OMPI_MCA_opal_common_ucx_tls any
_dsdfs_default OMPI_MCA_opal_common_ucx_devices any
_dsdfs_default OMPI_MCA_btl_tcp_if_include lo
_dsdfs_default OMPI_MCA_oob_tcp_if_include lo
_dsdfs_default OMPI_MCA_btl_vader_single_copy_mechanism none
_dsdfs_default OMPI_MCA_rmaps_base_oversubscribe 1
_dsdfs_default OMPI_MCA_hwloc_base_binding_policy none
_dsdfs_default OMPI_MCA_mpi_warn_on_fork 0
# On SIGTERM mpirun sends its ranks SIGCONT, waits this many seconds, sends
# SIGTERM, waits as long again and sends SIGKILL (Open MPI 4.1; default 1 s).
# 3 s leaves dsdfs-launch time to unmount and remove its store.
_dsdfs_default OMPI_MCA_odls_base_sigkill_timeout 3
_dsdfs_default PMIX_MCA_gds hash
_dsdfs_default PMIX_MCA_ptl_tcp_if_include lo
_dsdfs_default UCX_NET_DEVICES lo
_dsdfs_default UCX_WARN_UNUSED_ENV_VARS n
if [ "$(id -u)" = 0 ]; then
  _dsdfs_default OMPI_ALLOW_RUN_AS_ROOT 1
  _dsdfs_default OMPI_ALLOW_RUN_AS_ROOT_CONFIRM 1
fi
unset -f _dsdfs_default
