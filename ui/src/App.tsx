// The shell: sign-in gate, navigation, and the page for the current route.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Api, keyStore } from "./api";
import { JobPage } from "./pages/JobPage";
import { JobsList } from "./pages/JobsList";
import { NewJob } from "./pages/NewJob";
import { OutlierMapPage, OutlierMaps } from "./pages/OutlierMaps";
import { Playground } from "./pages/Playground";
import { SignIn } from "./pages/SignIn";
import { href, navigate, parseRoute, type Route, useLocation } from "./router";

const NAV: { path: string; label: string; routes: Route["name"][] }[] = [
  { path: "/jobs", label: "Jobs", routes: ["jobs", "job"] },
  { path: "/jobs/new", label: "New job", routes: ["new"] },
  { path: "/maps", label: "Outlier maps", routes: ["maps", "map"] },
  { path: "/playground", label: "Playground", routes: ["playground"] },
];

function title(route: Route): string {
  switch (route.name) {
    case "job":
      return `Job ${route.id}`;
    case "map":
      return `Outlier map ${route.id}`;
    case "missing":
      return "Not found";
    default:
      return NAV.find((n) => n.routes.includes(route.name))?.label ?? "Quaff";
  }
}

function Page({ api, route, query }: { api: Api; route: Route; query: URLSearchParams }) {
  switch (route.name) {
    case "jobs":
      return <JobsList api={api} query={query} />;
    case "job":
      return <JobPage api={api} id={route.id} key={route.id} />;
    case "new":
      return <NewJob api={api} />;
    case "maps":
      return <OutlierMaps api={api} />;
    case "map":
      return <OutlierMapPage api={api} id={route.id} key={route.id} />;
    case "playground":
      return <Playground api={api} query={query} />;
    case "missing":
      return (
        <section>
          <h1 id="page-title" tabIndex={-1}>
            Not found
          </h1>
          <p>
            There is no page at <code>{route.path}</code>. <a href={href("/jobs")}>See the jobs</a>.
          </p>
        </section>
      );
  }
}

export function App() {
  const [key, setKey] = useState(keyStore.get());
  const [notice, setNotice] = useState<string | null>(null);
  const { path, query } = useLocation();
  const route = parseRoute(path);
  const api = useMemo(
    () =>
      key &&
      new Api(key, (error) => {
        keyStore.clear();
        setKey(null);
        setNotice(`Please sign in again: ${error.message}`);
      }),
    [key],
  );
  const previous = useRef(path);
  useEffect(() => {
    document.title = `${title(route)} · Quaff`;
    if (previous.current !== path) document.getElementById("page-title")?.focus();
    previous.current = path;
  }, [path, !!api]);

  if (!api) {
    return (
      <SignIn
        notice={notice}
        onSignIn={(k) => {
          keyStore.set(k);
          setNotice(null);
          setKey(k);
        }}
      />
    );
  }
  const signOut = () => {
    keyStore.clear();
    setKey(null);
    navigate("/jobs", { replace: true });
  };
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href("/jobs")}>
          Quaff
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => (
              <li>
                <a href={href(n.path)} aria-current={n.routes.includes(route.name) ? "page" : undefined}>
                  {n.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" class="sign-out" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page api={api} route={route} query={query} />
      </main>
    </>
  );
}
