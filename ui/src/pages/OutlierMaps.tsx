// Outlier maps: the calibration results, and per map the outlier channels of each layer.
import { useMemo, useState } from "preact/hooks";
import type uPlot from "uplot";
import type { Api } from "../api";
import { ErrorNote, TableBox, useLoad } from "../components/bits";
import { Chart } from "../components/Chart";
import { TRAIN, VALID } from "../components/JobCharts";
import { num, when } from "../format";
import { href } from "../router";
import type { ApiList, OutlierMap } from "../types";

export function OutlierMaps({ api }: { api: Api }) {
  const [pages, setPages] = useState<OutlierMap[][]>([]);
  const first = useLoad((s) => api.get<ApiList<OutlierMap>>("/outlier_maps?limit=50", s), [api]);
  const [more, setMore] = useState<{ hasMore: boolean; error: unknown }>({ hasMore: true, error: null });
  const maps = [...(first.data?.data ?? []), ...pages.flat()];
  const hasMore = pages.length ? more.hasMore : first.data?.has_more;
  const loadMore = async () => {
    try {
      const page = await api.get<ApiList<OutlierMap>>(
        `/outlier_maps?limit=50&after=${maps[maps.length - 1].id}`,
      );
      setPages((p) => [...p, page.data]);
      setMore({ hasMore: page.has_more, error: null });
    } catch (e) {
      setMore({ hasMore: true, error: e });
    }
  };
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1}>
        Outlier maps
      </h1>
      <p>
        Each map is the result of one calibration: the input channels of every linear layer whose activations
        are outliers, kept in full precision while the rest of the layer runs in int8. Jobs on the same base
        model and data reuse a map.
      </p>
      <ErrorNote error={first.error ?? more.error} />
      {first.loading && !first.data && <p>Loading…</p>}
      {first.data && maps.length === 0 && (
        <p>
          No outlier maps yet: a job with quantization method <code>quaff</code> calibrates one.
        </p>
      )}
      {maps.length > 0 && (
        <TableBox label="Outlier maps">
          <table>
            <thead>
              <tr>
                <th scope="col">Map</th>
                <th scope="col">Base model</th>
                <th scope="col">Strategy</th>
                <th scope="col">Threshold</th>
                <th scope="col">Layers</th>
                <th scope="col">Outlier channels</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {maps.map((m) => (
                <tr key={m.id}>
                  <td>
                    <a href={href(`/maps/${m.id}`)}>
                      <code>{m.id}</code>
                    </a>
                  </td>
                  <td>{m.base_model}</td>
                  <td>{m.strategy}</td>
                  <td>{num(m.threshold)}</td>
                  <td>{m.n_layers}</td>
                  <td>{m.n_outlier_channels}</td>
                  <td>{when(m.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableBox>
      )}
      {hasMore && maps.length > 0 && (
        <button type="button" onClick={loadMore}>
          Load older maps
        </button>
      )}
    </section>
  );
}

/** Per layer (in the map's order): its name and outlier channel indices. */
export function layerRows(map: OutlierMap): { name: string; channels: number[] }[] {
  return Object.entries(map.layers ?? {}).map(([name, channels]) => ({
    name,
    channels: [...channels].sort((a, b) => a - b),
  }));
}

function countSummary(rows: { channels: number[] }[]): string {
  if (!rows.length) return "No layers.";
  const counts = rows.map((r) => r.channels.length);
  return `${rows.length} layers; ${Math.min(...counts)} to ${Math.max(...counts)} outlier channels per layer.`;
}

export function OutlierMapPage({ api, id }: { api: Api; id: string }) {
  const map = useLoad((s) => api.get<OutlierMap>(`/outlier_maps/${encodeURIComponent(id)}`, s), [api, id]);
  const rows = useMemo(() => (map.data ? layerRows(map.data) : []), [map.data]);
  const counts = useMemo<uPlot.AlignedData>(
    () => [rows.map((_, i) => i), rows.map((r) => r.channels.length)],
    [rows],
  );
  // A dot per (layer, channel); a small offset per dot keeps x increasing, as uPlot needs.
  const dots = useMemo<uPlot.AlignedData>(() => {
    const xs: number[] = [],
      ys: number[] = [];
    rows.forEach((r, i) =>
      r.channels.forEach((c, j) => {
        xs.push(i + (0.6 * j) / Math.max(r.channels.length, 1) - 0.3);
        ys.push(c);
      }),
    );
    return [xs, ys];
  }, [rows]);
  const layerName = (v: number) => rows[Math.round(v)]?.name ?? "";
  const m = map.data;
  return (
    <section aria-labelledby="page-title">
      <p class="crumbs">
        <a href={href("/maps")}>Outlier maps</a> /
      </p>
      <h1 id="page-title" tabIndex={-1}>
        Outlier map <code>{id}</code>
      </h1>
      <ErrorNote error={map.error} />
      {!m && !map.error && <p>Loading…</p>}
      {m && (
        <>
          <dl class="stats">
            <div>
              <dt>Base model</dt>
              <dd>{m.base_model}</dd>
            </div>
            <div>
              <dt>Strategy</dt>
              <dd>{m.strategy}</dd>
            </div>
            <div>
              <dt>Threshold</dt>
              <dd>{num(m.threshold)}</dd>
            </div>
            <div>
              <dt>Layers</dt>
              <dd>{m.n_layers}</dd>
            </div>
            <div>
              <dt>Outlier channels</dt>
              <dd>{m.n_outlier_channels}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{when(m.created_at)}</dd>
            </div>
          </dl>
          <div class="charts">
            <Chart
              title="Outlier channels per layer"
              xLabel="layer"
              kind="bars"
              series={[{ label: "outlier channels", color: TRAIN }]}
              data={counts}
              version={rows.length}
              xValue={layerName}
              summary={countSummary(rows)}
            />
            <Chart
              title="Outlier channel positions (a dot per channel)"
              xLabel="layer"
              kind="points"
              series={[{ label: "channel index", color: VALID }]}
              data={dots}
              version={rows.length}
              xValue={layerName}
              summary="Dots at the same height in many layers are channels that are outliers throughout the model."
            />
          </div>
          <h2>Layers</h2>
          <TableBox label="Outlier channels by layer">
            <table>
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Layer</th>
                  <th scope="col">Count</th>
                  <th scope="col">Channels</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r, i) => (
                  <tr key={r.name}>
                    <td>{i}</td>
                    <td>
                      <code class="wrap">{r.name}</code>
                    </td>
                    <td>{r.channels.length}</td>
                    <td class="channels">{r.channels.join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableBox>
          {m.dataset_file && (
            <p>
              Calibrated on <code>{m.dataset_file}</code>.
            </p>
          )}
        </>
      )}
    </section>
  );
}
