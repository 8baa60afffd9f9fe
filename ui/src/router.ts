// Client-side routes under /ui (the server answers index.html for each of them).
import { useEffect, useState } from "preact/hooks";

export const BASE = "/ui";

export type Route =
  | { name: "jobs" }
  | { name: "job"; id: string }
  | { name: "new" }
  | { name: "maps" }
  | { name: "map"; id: string }
  | { name: "playground" }
  | { name: "missing"; path: string };

/** The route for a location path such as `/ui/jobs/ftjob-1`. */
export function parseRoute(pathname: string): Route {
  const path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (parts.length === 0 || (first === "jobs" && parts.length === 1)) return { name: "jobs" };
  if (first === "jobs" && second === "new" && parts.length === 2) return { name: "new" };
  if (first === "jobs" && parts.length === 2) return { name: "job", id: second };
  if (first === "maps" && parts.length === 1) return { name: "maps" };
  if (first === "maps" && parts.length === 2) return { name: "map", id: second };
  if (first === "playground" && parts.length === 1) return { name: "playground" };
  return { name: "missing", path };
}

/** An absolute link for a dashboard path: `href("/jobs/ftjob-1")`. */
export function href(path: string): string {
  return BASE + path;
}

const CHANGE = "quaff:navigate";

export function navigate(path: string, { replace = false } = {}): void {
  const url = path.startsWith(BASE) ? path : href(path);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(CHANGE));
}

/** Same-origin links under /ui navigate without a reload (modified clicks open tabs as usual). */
function onClick(event: MouseEvent): void {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = (event.target as Element | null)?.closest?.("a");
  if (!link || link.target || link.hasAttribute("download")) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

/** The current location, re-rendered on every navigation. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const read = () => ({ path: location.pathname, query: new URLSearchParams(location.search) });
  const [where, setWhere] = useState(read);
  useEffect(() => {
    const update = () => setWhere(read());
    window.addEventListener("popstate", update);
    window.addEventListener(CHANGE, update);
    document.addEventListener("click", onClick);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(CHANGE, update);
      document.removeEventListener("click", onClick);
    };
  }, []);
  return where;
}

/** Replace the query string (filters) without a new history entry. */
export function setQuery(query: URLSearchParams): void {
  const search = query.toString();
  history.replaceState(null, "", location.pathname + (search ? `?${search}` : ""));
}
