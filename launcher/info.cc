// SPDX-License-Identifier: Apache-2.0
#include "launcher/info.h"

#include <hwloc.h>
#include <infiniband/verbs.h>
#include <pthread.h>
#include <sched.h>
#include <uct/api/uct.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace dsdfs::launcher {

namespace {

struct Device {
  std::string name;       // as UCX names it: mlx5_0:1, eth0, ...
  std::string transports;
};

// UCX's transports and devices, as uct lists them (every memory domain).
std::vector<Device> ucx_devices() {
  std::vector<Device> out;
  uct_component_h* comps = nullptr;
  unsigned ncomps = 0;
  if (uct_query_components(&comps, &ncomps) != UCS_OK) return out;
  for (unsigned c = 0; c < ncomps; ++c) {
    uct_component_attr_t attr = {};
    attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCE_COUNT;
    if (uct_component_query(comps[c], &attr) != UCS_OK) continue;
    std::vector<uct_md_resource_desc_t> mds(attr.md_resource_count);
    attr.field_mask = UCT_COMPONENT_ATTR_FIELD_MD_RESOURCES | UCT_COMPONENT_ATTR_FIELD_NAME;
    attr.md_resources = mds.data();
    if (uct_component_query(comps[c], &attr) != UCS_OK) continue;
    for (auto& md_res : mds) {
      uct_md_config_t* cfg = nullptr;
      if (uct_md_config_read(comps[c], nullptr, nullptr, &cfg) != UCS_OK) continue;
      uct_md_h md = nullptr;
      ucs_status_t st = uct_md_open(comps[c], md_res.md_name, cfg, &md);
      uct_config_release(cfg);
      if (st != UCS_OK) continue;
      uct_tl_resource_desc_t* tls = nullptr;
      unsigned ntls = 0;
      if (uct_md_query_tl_resources(md, &tls, &ntls) == UCS_OK) {
        for (unsigned t = 0; t < ntls; ++t) {
          std::string dev = tls[t].dev_name;
          auto it = std::find_if(out.begin(), out.end(), [&](const Device& d) { return d.name == dev; });
          if (it == out.end()) out.push_back({dev, tls[t].tl_name});
          else it->transports += std::string(",") + tls[t].tl_name;
        }
        uct_release_tl_resource_list(tls);
      }
      uct_md_close(md);
    }
  }
  uct_release_component_list(comps);
  return out;
}

const char* port_state(enum ibv_port_state s) {
  switch (s) {
    case IBV_PORT_ACTIVE: return "active";
    case IBV_PORT_DOWN: return "down";
    case IBV_PORT_INIT: return "init";
    case IBV_PORT_ARMED: return "armed";
    default: return "other";
  }
}

const char* link_layer(uint8_t l) {
  switch (l) {
    case IBV_LINK_LAYER_INFINIBAND: return "InfiniBand";
    case IBV_LINK_LAYER_ETHERNET: return "Ethernet (RoCE)";
    default: return "unspecified";
  }
}

// The NIC UCX would use: the first device named in UCX_NET_DEVICES, else the
// first RDMA device, else the first network device that is not loopback.
std::string preferred_nic(const std::vector<Device>& devs) {
  if (const char* nd = std::getenv("UCX_NET_DEVICES"); nd && *nd && std::strcmp(nd, "all") != 0) {
    std::string first = nd;
    first = first.substr(0, first.find(','));
    return first.substr(0, first.find(':'));
  }
  int n = 0;
  if (struct ibv_device** list = ibv_get_device_list(&n)) {
    std::string name = n > 0 ? ibv_get_device_name(list[0]) : "";
    ibv_free_device_list(list);
    if (!name.empty()) return name;
  }
  for (const auto& d : devs) {
    if (d.transports.find("tcp") != std::string::npos && d.name != "lo") return d.name;
  }
  return {};
}

// The hwloc OS device of that NIC and the cpuset of its nearest non-I/O ancestor.
struct NicPlace {
  bool found = false;
  std::string where;
  hwloc_bitmap_t cpuset = nullptr;
};

NicPlace locate_nic(hwloc_topology_t topo, const std::string& nic) {
  NicPlace p;
  if (nic.empty()) return p;
  for (hwloc_obj_t os = hwloc_get_next_osdev(topo, nullptr); os; os = hwloc_get_next_osdev(topo, os)) {
    if (!os->name || nic != os->name) continue;
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, os);
    if (!anc || !anc->cpuset) continue;
    p.found = true;
    char type[64], set[256];
    hwloc_obj_type_snprintf(type, sizeof type, anc, 0);
    hwloc_bitmap_list_snprintf(set, sizeof set, anc->cpuset);
    p.where = std::string(type) + " " + std::to_string(anc->logical_index) + " (cpus " + set + ")";
    p.cpuset = hwloc_bitmap_dup(anc->cpuset);
    return p;
  }
  return p;
}

hwloc_topology_t load_topology() {
  hwloc_topology_t topo;
  if (hwloc_topology_init(&topo) != 0) return nullptr;
  hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
  if (hwloc_topology_load(topo) != 0) {
    hwloc_topology_destroy(topo);
    return nullptr;
  }
  return topo;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Whether UCX_TLS admits transport tl (with UCX's aliases: sm/shm, rc, ud,
// dc, mm, ib; a leading ^ excludes).
bool tls_admits(const std::string& tl) {
  const char* env = std::getenv("UCX_TLS");
  if (!env || !*env || std::string(env) == "all") return true;
  std::string list = env;
  bool negate = list[0] == '^';
  if (negate) list.erase(0, 1);
  auto matches = [&](const std::string& item) {
    if (item == "all" || item == tl) return true;
    static const std::pair<const char*, const char*> kAliases[] = {
        {"sm", "sysv posix cma knem xpmem"}, {"shm", "sysv posix cma knem xpmem"}, {"mm", "sysv posix xpmem"},
        {"rc", "rc_verbs rc_mlx5"},          {"rc_x", "rc_mlx5"},                  {"rc_v", "rc_verbs"},
        {"ud", "ud_verbs ud_mlx5"},          {"ud_x", "ud_mlx5"},                  {"ud_v", "ud_verbs"},
        {"dc", "dc_mlx5"},                   {"dc_x", "dc_mlx5"},
        {"ib", "rc_verbs rc_mlx5 ud_verbs ud_mlx5 dc_mlx5"}};
    for (auto [alias, members] : kAliases) {
      if (item != alias) continue;
      std::string_view rest = members;
      while (!rest.empty()) {
        size_t sp = rest.find(' ');
        if (rest.substr(0, sp) == tl) return true;
        rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
      }
    }
    return false;
  };
  bool any = false;
  for (const auto& item : split_list(list)) any = any || matches(item);
  return negate ? !any : any;
}

// Whether UCX_NET_DEVICES admits a network device (memory devices always pass).
bool net_devices_admit(const std::string& dev, const std::string& transports) {
  const char* env = std::getenv("UCX_NET_DEVICES");
  if (!env || !*env || std::string(env) == "all") return true;
  if (transports.find("tcp") == std::string::npos && dev.find("mlx") == std::string::npos &&
      dev.find("rxe") == std::string::npos) {
    return true;  // shared memory and self are not network devices
  }
  for (const auto& item : split_list(env)) {
    if (item == dev || item.substr(0, item.find(':')) == dev.substr(0, dev.find(':'))) return true;
  }
  return false;
}

thread_local bool t_saved = false;
thread_local cpu_set_t t_saved_mask;

}  // namespace

std::string bind_near_nic() {
  hwloc_topology_t topo = load_topology();
  if (!topo) return "hwloc could not load the topology; progress thread not bound";
  std::string nic = preferred_nic(ucx_devices());
  NicPlace p = locate_nic(topo, nic);
  std::string out;
  hwloc_obj_t root = hwloc_get_root_obj(topo);
  if (!p.found) {
    out = nic.empty() ? "no NIC found; progress thread not bound"
                      : "NIC " + nic + " has no known locality; progress thread not bound";
  } else if (hwloc_bitmap_isequal(p.cpuset, root->cpuset)) {
    out = "NIC " + nic + " is near every CPU (" + p.where + "); progress thread not bound";
  } else {
    t_saved = sched_getaffinity(0, sizeof t_saved_mask, &t_saved_mask) == 0;
    if (hwloc_set_cpubind(topo, p.cpuset, HWLOC_CPUBIND_THREAD) == 0) {
      out = "progress thread bound near NIC " + nic + ": " + p.where;
    } else {
      out = "could not bind near NIC " + nic + " (" + p.where + ")";
      t_saved = false;
    }
  }
  if (p.cpuset) hwloc_bitmap_free(p.cpuset);
  hwloc_topology_destroy(topo);
  return out;
}

void restore_binding() {
  if (t_saved) sched_setaffinity(0, sizeof t_saved_mask, &t_saved_mask);
  t_saved = false;
}

int print_info(const fs::Options&) {
  std::printf("dsdfs %s (protocol %d)\n\n", DSDFS_VERSION, DSDFS_PROTOCOL_VERSION);
  const char* tls = std::getenv("UCX_TLS");
  const char* nd = std::getenv("UCX_NET_DEVICES");
  std::printf("UCX transports and devices (UCX_TLS=%s, UCX_NET_DEVICES=%s):\n", tls ? tls : "(unset: all)",
              nd ? nd : "(unset: all)");
  auto devs = ucx_devices();
  for (const auto& d : devs) {
    std::string used, excluded;
    for (const auto& tl : split_list(d.transports)) {
      std::string& to = (tls_admits(tl) && net_devices_admit(d.name, d.transports)) ? used : excluded;
      to += (to.empty() ? "" : ",") + tl;
    }
    std::printf("  %-16s %s%s%s\n", d.name.c_str(), used.empty() ? "-" : used.c_str(),
                excluded.empty() ? "" : "   (excluded by UCX_TLS/UCX_NET_DEVICES: ", excluded.empty() ? "" : (excluded + ")").c_str());
  }
  if (devs.empty()) std::printf("  (none: UCX found no transport)\n");

  std::printf("\nRDMA devices (libibverbs):\n");
  int n = 0;
  struct ibv_device** list = ibv_get_device_list(&n);
  if (!list || n == 0) std::printf("  none (no RDMA hardware or soft-RoCE device): UCX uses TCP and shared memory\n");
  for (int i = 0; list && i < n; ++i) {
    const char* name = ibv_get_device_name(list[i]);
    struct ibv_context* ctx = ibv_open_device(list[i]);
    if (!ctx) {
      std::printf("  %s: cannot open (%s)\n", name, std::strerror(errno));
      continue;
    }
    struct ibv_device_attr attr;
    if (ibv_query_device(ctx, &attr) == 0) {
      for (uint8_t port = 1; port <= attr.phys_port_cnt; ++port) {
        struct ibv_port_attr pa;
        if (ibv_query_port(ctx, port, &pa) == 0) {
          std::printf("  %s port %u: %s, link layer %s\n", name, port, port_state(pa.state),
                      link_layer(pa.link_layer));
        }
      }
    }
    ibv_close_device(ctx);
  }
  if (list) ibv_free_device_list(list);

  std::printf("\nPlacement (hwloc):\n");
  hwloc_topology_t topo = load_topology();
  if (!topo) {
    std::printf("  hwloc could not load the topology\n");
  } else {
    std::printf("  %d cores, %d NUMA nodes\n", hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE),
                hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE));
    std::string nic = preferred_nic(devs);
    NicPlace p = locate_nic(topo, nic);
    if (nic.empty()) std::printf("  NIC: none found\n");
    else if (p.found) std::printf("  NIC %s: near %s\n", nic.c_str(), p.where.c_str());
    else std::printf("  NIC %s: no locality known to hwloc\n", nic.c_str());
    if (p.cpuset) hwloc_bitmap_free(p.cpuset);
    hwloc_topology_destroy(topo);
  }
  std::printf("  progress thread: %s\n", bind_near_nic().c_str());
  restore_binding();
  return 0;
}

}  // namespace dsdfs::launcher
