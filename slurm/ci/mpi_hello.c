// SPDX-License-Identifier: Apache-2.0
// mpi_hello: the smallest real MPI job. Every rank contributes rank*10 to an
// MPI_Allgather and checks what it got back. Used by scripts/slurm-smoke.sh
// to prove that mpirun, `srun --mpi=pmix` and sbatch work before the test
// suites run. Exit 0 only if the allgather was right.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int *all = malloc(sizeof(int) * (size_t)size);
  int mine = rank * 10;
  MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
  int ok = 1;
  for (int i = 0; i < size; i++) {
    ok &= all[i] == i * 10;
  }
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  printf("mpi_hello: rank %d of %d on %s: allgather %s\n", rank, size, host, ok ? "ok" : "WRONG");
  free(all);
  MPI_Finalize();
  return ok ? 0 : 1;
}
