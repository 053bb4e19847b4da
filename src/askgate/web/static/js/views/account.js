// Account view (MANAGE).
import { el } from "../dom.js";

export async function render(root, ctx) {
  root.append(el("h1", { text: "Account" }));
}
