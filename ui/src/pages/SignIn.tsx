// Sign in with an API key; it is checked against /v1/models and kept in this tab's sessionStorage.
import { useState } from "preact/hooks";
import { Api } from "../api";
import { ErrorNote } from "../components/bits";

export function SignIn({ onSignIn, notice }: { onSignIn: (key: string) => void; notice: string | null }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await new Api(key.trim()).get("/models");
      onSignIn(key.trim());
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };

  return (
    <main id="main" class="sign-in">
      <h1>Quaff</h1>
      <form onSubmit={submit} aria-describedby="key-help">
        {notice && (
          <p class="error-note" role="alert">
            {notice}
          </p>
        )}
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="current-password"
          required
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
        />
        <p id="key-help" class="help">
          <code>make run</code> prints one (it is saved in <code>.quaff/api-key</code>);{" "}
          <code>quaff keys create</code> makes more. The key stays in this browser tab only and is sent as{" "}
          <code>Authorization: Bearer</code> to the same <code>/v1</code> API that scripts use.
        </p>
        <ErrorNote error={error} />
        <button type="submit" class="primary" disabled={busy || !key.trim()}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
